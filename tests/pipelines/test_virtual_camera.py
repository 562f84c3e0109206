"""The virtual camera: the one line where no loopback device exists, and the frames a call app would get,
through pyvirtualcam's own interface with the file-backed device (pipelines/sinks/camera_file.py)."""

from __future__ import annotations

import asyncio
import glob
import subprocess

import av
import numpy as np
import pytest

from avcall.pipelines.frames import VideoFrame
from avcall.pipelines.sinks.camera_file import read_frames
from avcall.pipelines.sinks.virtual_camera import VirtualCameraSink

no_loopback = pytest.mark.skipif(bool(glob.glob("/sys/devices/virtual/video4linux/video*")),
                                 reason="this machine has a loopback camera: the missing-device line cannot show")


@no_loopback
def test_no_loopback_device_is_one_line_and_the_frames_go_on():
    said: list[str] = []
    sink = VirtualCameraSink((64, 48), 25, warn=said.append)
    frame = VideoFrame(pts=0.0, image=np.zeros((48, 64, 3), np.uint8))

    async def run():
        await sink.start()
        out = await sink.process(frame)
        await sink.stop()
        return out

    assert asyncio.run(run()) == [frame]
    assert len(said) == 1 and "\n" not in said[0]
    assert "v4l2loopback" in said[0] and "apt-get install v4l2loopback-dkms" in said[0] and "modprobe" in said[0]
    assert sink.camera is None and sink.frames_sent == 0


def test_file_camera_receives_every_outgoing_frame_at_the_calls_size(tmp_path):
    """Frames of another size are scaled to the camera's; each one sent is in the file, in order."""
    out = tmp_path / "camera.raw"
    sink = VirtualCameraSink((32, 24), 30, device=str(out), backend="file")
    images = [np.full((48, 64, 3), 40 * k, np.uint8) for k in range(5)]

    async def run():
        await sink.start()
        for k, image in enumerate(images):
            await sink.process(VideoFrame(pts=k / 30, image=image, index=k))
        await sink.stop()

    asyncio.run(run())
    meta, frames = read_frames(out)
    assert meta["fps"] == 30 and (meta["width"], meta["height"]) == (32, 24) and meta["frames"] == 5
    assert frames.shape == (5, 24, 32, 3)
    assert [int(f.mean()) for f in frames] == [40 * k for k in range(5)]


def test_process_sends_the_annotated_video_to_the_camera(tmp_path, shared_data):
    """A real talking-face clip through the call with `camera_out`: the camera gets every frame of
    annotated.mp4 (the overlay drawn), at its size, as they were made."""
    from avcall.app.process import ProcessConfig, run_process

    # the clip's picture only (the camera's output is the video's; the voice's stages are not needed here)
    clip = tmp_path / "face.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(shared_data / "talking_faces" / "GRID_bbaf2n.mpg"),
                    "-an", "-c:v", "copy", str(clip)], check=True)
    camera = tmp_path / "camera.raw"
    result = run_process(ProcessConfig(input=clip, outdir=tmp_path / "out", camera_out=f"file:{camera}"),
                         progress=False)
    meta, frames = read_frames(camera)
    with av.open(str(tmp_path / "out" / "annotated.mp4")) as container:
        annotated = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    with av.open(str(clip)) as container:
        raw = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert meta["frames"] == len(frames) == len(annotated) == result.video_frames > 50
    assert frames.shape[1:3] == annotated[0].shape[:2]
    # the camera's frames are annotated.mp4's before its lossy encoding, not the clip's: the overlay is drawn
    def far_off(a, b):  # pixels a line of the overlay moved (codec noise moves none this far)
        return np.mean([(np.abs(x.astype(int) - y).max(axis=2) > 80).mean() for x, y in zip(a, b)])

    to_annotated, to_raw = far_off(annotated, frames), far_off(raw, frames)
    assert to_raw > 3e-4 and to_annotated < to_raw / 20, (to_annotated, to_raw)
