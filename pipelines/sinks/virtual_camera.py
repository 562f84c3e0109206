"""Virtual camera: the call's outgoing video (the camera with the overlay drawn, or the talking face with
--avatar) sent to a camera that call apps list, through pyvirtualcam: a v4l2loopback device on Linux, OBS's
virtual camera on Windows and macOS. Frames go out as they come, at the camera's rate, at the call's size.

Where no virtual camera can be opened, `start` says in one line what is missing and how to get it, and the
stage passes the frames by: the rest of the call (the window, the voice, the captions) runs as before.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

import cv2

from ..frames import Frame, VideoFrame
from ..stage import Stage


def missing_camera_line(detail: str = "") -> str:
    """The one line `avcall live` says when it cannot open a virtual camera."""
    return (f"avcall: no virtual camera: {missing_camera()}{detail}; the call goes on without it "
            f"(--camera-out off: no camera out)")


def missing_camera() -> str:
    """What to install or load for a virtual camera on this platform."""
    if sys.platform.startswith("linux"):
        if os.path.isdir("/sys/module/v4l2loopback"):
            what = ("the v4l2loopback module is loaded but no free loopback device was found; reload it with "
                    "one: sudo modprobe -r v4l2loopback && sudo modprobe v4l2loopback devices=1 exclusive_caps=1 "
                    "card_label='avcall camera'")
        else:
            what = ("the v4l2loopback kernel module is not loaded (Debian/Ubuntu: sudo apt-get install "
                    "v4l2loopback-dkms, then sudo modprobe v4l2loopback exclusive_caps=1 card_label='avcall camera')")
    else:
        what = ("OBS Studio's virtual camera is not installed (install OBS Studio 30 or later, start its "
                "virtual camera once and stop it)")
    return what


class VirtualCameraSink(Stage):
    accepts = (VideoFrame,)

    def __init__(self, size: tuple[int, int], fps: float, *, device: str | None = None,
                 backend: str | None = None, warn: Callable[[str], None] | None = None) -> None:
        """`size`: (width, height) of what goes out (frames of another size are scaled to it); `device`: a
        loopback device (/dev/video10) or None for the first free one; `backend`: pyvirtualcam's name for it."""
        super().__init__("virtual_camera_out")
        self.size = (int(size[0]), int(size[1]))
        self.fps = float(fps)
        self.device = device
        self.backend = backend
        self.warn = warn or (lambda line: print(line, file=sys.stderr))
        self.camera = None
        self.frames_sent = 0

    async def start(self) -> None:
        try:
            import pyvirtualcam
        except ImportError as err:
            self.warn(missing_camera_line(f" and pyvirtualcam is not installed ({err}: pip install pyvirtualcam==0.15.0)"))
            return
        if self.backend == "file":
            from .camera_file import register

            register()
        try:
            self.camera = await self.in_worker(lambda: pyvirtualcam.Camera(
                *self.size, self.fps, fmt=pyvirtualcam.PixelFormat.BGR, device=self.device, backend=self.backend))
        except (RuntimeError, ValueError, OSError) as err:
            detail = f" ({self.device}: {str(err).splitlines()[0]})" if self.device else ""
            self.warn(missing_camera_line(detail))
            return
        self.report(camera_out=self.camera.device)

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if self.camera is not None:
            await self.in_worker(self._send, frame.image)
        return [frame]

    def _send(self, image) -> None:
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.camera.send(image)
        self.frames_sent += 1

    async def stop(self) -> None:
        if self.camera is not None:
            camera, self.camera = self.camera, None
            await self.in_worker(camera.close)
