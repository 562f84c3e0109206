"""Shared fixtures: media files made on the fly with PyAV, and ../shared/data when it is there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avcall.models.data.shared_data import shared_data_dir
from avcall.pipelines.runtime import weights_path

# the emotion nets are exported by `avcall train emotion --export`; until then their tests say why they wait
needs_emotion_weights = pytest.mark.skipif(
    not (weights_path("emotion_face.onnx").is_file() and weights_path("emotion_voice.onnx").is_file()),
    reason=f"the emotion nets are not exported yet: {weights_path('emotion_face.onnx')} (and emotion_voice.onnx) "
           "missing")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = shared_data_dir()
    if data is None:
        pytest.skip("../shared/data is absent: the real recordings are not beside this checkout")
    return data


@pytest.fixture(scope="session")
def arctic_speech(shared_data) -> np.ndarray:
    """3 s of a real read utterance (CMU ARCTIC, ../shared/data/speech) as 16 kHz mono float32."""
    from avcall.app.eval.data import load_audio

    return load_audio(shared_data / "speech" / "pyroomacoustics_cmu_arctic_us_aew_a0001.wav")[: 3 * 16_000]


def _non_loopback_ipv4() -> bool:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    return any(" inet " in line and " 127." not in line for line in out.splitlines())


@pytest.fixture(scope="session")
def ice_address() -> None:
    """WebRTC on this machine needs a host address that is not 127.0.0.1 (aiortc's ICE skips loopback).
    On a machine with only `lo` (a bare CI container), give `lo` an extra private address, as root."""
    if shutil.which("ip") is None or _non_loopback_ipv4():
        return
    added = subprocess.run(["ip", "addr", "add", "10.254.254.1/32", "dev", "lo"], capture_output=True, text=True)
    if added.returncode != 0 and not _non_loopback_ipv4():
        pytest.skip(f"no address for WebRTC's ICE besides 127.0.0.1, and none can be added: {added.stderr.strip()}")


def write_media(path: Path, *, seconds: float = 1.0, size: tuple[int, int] | None = (64, 48), fps: int = 25,
                video_codec: str = "mpeg4", audio_codec: str | None = "aac", audio_rate: int = 48000,
                channels: int = 2, flashes: tuple[float, ...] = ()) -> Path:
    """A small clip: grey video (white frames at `flashes`) and a 440 Hz tone with clicks at `flashes`."""
    with av.open(str(path), "w") as container:
        video = None
        if size is not None:
            video = container.add_stream(video_codec, rate=fps)
            video.width, video.height = size
            video.pix_fmt = "rgb24" if video_codec == "png" else "yuv420p"
        audio = None
        if audio_codec is not None:
            audio = container.add_stream(audio_codec, rate=audio_rate,
                                         layout="stereo" if channels == 2 else "mono")
        container.start_encoding()  # the header, even when no frame follows (a 0-second file)
        if video is not None:
            flash_frames = {round(t * fps) for t in flashes}
            for i in range(round(seconds * fps)):
                level = 255 if i in flash_frames else 60
                frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), level, np.uint8), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, fps)
                container.mux(video.encode(frame))
            container.mux(video.encode(None))
        if audio is not None:
            n = round(seconds * audio_rate)
            t = np.arange(n) / audio_rate
            tone = 0.1 * np.sin(2 * np.pi * 440 * t)
            for f in flashes:
                start = round(f * audio_rate)
                tone[start:start + audio_rate // 200] = 0.9
            block = 1024
            for i in range(0, n, block):
                chunk = np.tile(tone[i:i + block].astype(np.float32), (channels, 1))
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo" if channels == 2 else "mono")
                frame.sample_rate, frame.pts, frame.time_base = audio_rate, i, Fraction(1, audio_rate)
                container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
    return path


async def read_all(source) -> list:
    """Every frame a source gives, start to end, through its public interface."""
    from avcall.pipelines.sources.base import SourceEnded

    frames = []
    await source.start()
    try:
        while True:
            frames.append(await source.recv())
    except SourceEnded:
        return frames
    finally:
        await source.stop()


def run_cli(*args: str, timeout: float = 300, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`avcall ARGS` as a user runs it, in a subprocess (`env`: variables set on top of ours)."""
    return subprocess.run([sys.executable, "-m", "avcall.app.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
