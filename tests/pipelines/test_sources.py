"""Sources: every container the file source opens, the camera thread, the microphone's resampling."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avcall.pipelines.errors import DeviceError
from avcall.pipelines.frames import HOP_SAMPLES, SAMPLE_RATE, AudioFrame, VideoFrame
from avcall.pipelines.sources.camera import CameraSource
from avcall.pipelines.sources.file import FileSource
from avcall.pipelines.sources.microphone import MicrophoneSource, import_sounddevice
from tests.conftest import read_all, write_media


CONTAINERS = [  # (suffix, video codec or None, audio codec or None)
    ("mp4", "mpeg4", "aac"), ("mkv", "mpeg4", "flac"), ("webm", "libvpx", "libopus"), ("mpg", "mpeg1video", "mp2"),
    ("wav", None, "pcm_s16le"), ("flac", None, "flac"), ("m4a", None, "aac"),
]


@pytest.mark.parametrize("suffix,vcodec,acodec", CONTAINERS)
def test_file_source_reads_each_container_as_16k_mono_hops(tmp_path, suffix, vcodec, acodec):
    rate = 48000 if acodec in ("libopus", "mp2", "aac") else 44100
    path = write_media(tmp_path / f"clip.{suffix}", seconds=1.0, size=(64, 48) if vcodec else None,
                       video_codec=vcodec or "mpeg4", audio_codec=acodec, audio_rate=rate)
    frames = asyncio.run(read_all(FileSource(path)))
    audio = [f for f in frames if isinstance(f, AudioFrame)]
    video = [f for f in frames if isinstance(f, VideoFrame)]
    assert all(f.samples.dtype == np.float32 and f.samples.ndim == 1 for f in audio)
    assert all(len(f.samples) == HOP_SAMPLES for f in audio[:-1])
    assert abs(sum(len(f.samples) for f in audio) / SAMPLE_RATE - 1.0) < 0.06
    assert np.allclose(np.diff([f.pts for f in audio]), HOP_SAMPLES / SAMPLE_RATE)
    if vcodec:
        assert len(video) == 25 and video[0].image.shape == (48, 64, 3)
        assert np.allclose(np.diff([f.pts for f in video]), 0.04, atol=1e-3)
    else:
        assert video == []


def test_camera_source_runs_its_capture_thread_on_anything_opencv_opens(tmp_path):
    """No camera here: the same CameraSource reads a file through cv2.VideoCapture."""
    path = write_media(tmp_path / "cam.mp4", seconds=1.0, audio_codec=None)
    source = CameraSource(str(path))
    frames = asyncio.run(read_all(source))
    assert source.frames_captured == 25
    assert 1 <= len(frames) <= 25  # latest-frame-wins at the source: a slow reader skips frames
    assert all(isinstance(f, VideoFrame) for f in frames)
    assert list(np.diff([f.pts for f in frames]) >= 0) == [True] * (len(frames) - 1)


def test_missing_camera_says_what_was_looked_for_and_how_to_pick_another():
    with pytest.raises(DeviceError, match=r"/dev/video57.*--camera"):
        asyncio.run(CameraSource(57).start())


def test_missing_microphone_names_the_flag():
    try:
        sd = import_sounddevice()
        if any(d["max_input_channels"] > 0 for d in sd.query_devices()):
            pytest.skip("this machine has a microphone")
    except DeviceError as err:  # no PortAudio at all: that message is the one a user gets
        assert "libportaudio2" in str(err)
        return
    with pytest.raises(DeviceError, match="--mic"):
        asyncio.run(MicrophoneSource("no such mic").start())


def test_microphone_blocks_are_resampled_once_and_stamped_on_the_clock():
    """PortAudio's callback fed by hand with 48 kHz stereo blocks, as a device would deliver them."""

    async def scenario():
        mic = MicrophoneSource()
        mic.open_blocks(48000)
        t = np.arange(48000) / 48000
        tone = np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 300 * t)], axis=1).astype(np.float32)
        for i in range(0, 48000, 480):
            mic._on_block(tone[i:i + 480], 480, None, None)
        await asyncio.sleep(0)
        return [await mic.recv() for _ in range(95)]

    frames = asyncio.run(scenario())
    assert all(len(f.samples) == HOP_SAMPLES and f.sample_rate == SAMPLE_RATE for f in frames)
    assert np.allclose(np.diff([f.pts for f in frames]), 0.01)
    samples = np.concatenate([f.samples for f in frames])[1000:]
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(samples) - 300) < 5  # the tone, at the new rate
