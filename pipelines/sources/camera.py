"""Camera source: OpenCV capture on its own thread, each frame stamped on the session clock as it arrives.

The capture thread keeps only the newest frame (latest-frame-wins at the source): a slow consumer sees
fresh frames, never a backlog. `device` is a camera index or anything OpenCV opens (a file path, a URL),
which is how the tests drive this exact code without a camera.

A camera that vanishes mid-call (unplugged, taken by another app) is not the end of the call: with
`reconnect` (the default for a camera index) the source reports `camera_lost`, tries to reopen it every
`retry_s` and reports `camera_back` when it delivers again; meanwhile the rest of the call (the voice) goes
on. A file or URL that ends is the end of the stream.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Callable

import cv2

from ..clock import SessionClock
from ..errors import DeviceError
from ..frames import Frame, VideoFrame
from .base import Source, SourceEnded


def open_capture(device: int | str) -> cv2.VideoCapture:
    """A camera index opens through V4L2 on Linux (the default probes other backends first, noisily)."""
    if isinstance(device, int) and sys.platform.startswith("linux"):
        return cv2.VideoCapture(device, cv2.CAP_V4L2)
    return cv2.VideoCapture(device)


class CameraSource(Source):
    def __init__(self, device: int | str = 0, *, clock: SessionClock | None = None,
                 width: int = 640, height: int = 480, fps: float = 30.0, reconnect: bool | None = None,
                 retry_s: float = 0.5, opener: Callable[[int | str], cv2.VideoCapture] = open_capture) -> None:
        self.device = device
        self.clock = clock or SessionClock()
        self.width, self.height, self.fps = width, height, fps
        self.reconnect = isinstance(device, int) if reconnect is None else reconnect
        self.retry_s = retry_s
        self.opener = opener
        self._stopping = threading.Event()
        self.frames_captured = 0
        self.size = (0, 0)
        self._capture: cv2.VideoCapture | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._newest: Frame | None = None
        self._ended = False
        self._ready: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> tuple[int, int]:
        """Open the camera (start() does it if nobody did) and return the frame size it delivers."""
        if self._capture is not None:
            return self.size
        capture = self._open_capture()
        if capture is None:
            where = f"/dev/video{self.device}" if isinstance(self.device, int) else str(self.device)
            raise DeviceError(f"no camera at {where}; `avcall devices` lists the cameras found, "
                              f"pick one with --camera N")
        self._capture = capture
        self.size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        return self.size

    def _open_capture(self) -> cv2.VideoCapture | None:
        capture = self.opener(self.device)
        if not capture.isOpened():
            capture.release()
            return None
        if isinstance(self.device, int):
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        return capture

    async def start(self) -> None:
        await self.open()
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._capture_loop, name="avcall-camera", daemon=True)
        self._thread.start()

    def _capture_loop(self) -> None:
        index = 0
        while self._running.is_set():
            ok, image = self._capture.read()
            pts = self.clock.now()
            if not ok:
                if not self.reconnect or not self._reopen(pts):
                    break
                continue
            if (image.shape[1], image.shape[0]) != self.size:  # a different camera came back: same frame size
                image = cv2.resize(image, self.size)
            frame = VideoFrame(pts=pts, image=image, index=index)
            index += 1
            self.frames_captured = index
            self._loop.call_soon_threadsafe(self._deliver, frame)
        self._loop.call_soon_threadsafe(self._deliver, None)

    def _reopen(self, lost_at: float) -> bool:
        """The camera stopped delivering: report it, retry until it is back (True) or the source stops."""
        self.incidents.note("camera_lost", lost_at, device=str(self.device))
        self._capture.release()
        while not self._stopping.wait(self.retry_s):
            capture = self._open_capture()
            if capture is None:
                continue
            ok, _ = capture.read()
            if ok:
                self._capture = capture
                back = self.clock.now()
                self.incidents.note("camera_back", back, after_s=round(back - lost_at, 3))
                self.incidents.count("camera_lost_s", back - lost_at)
                return True
            capture.release()
        self._capture = None
        return False

    def _deliver(self, frame: Frame | None) -> None:
        if frame is None:
            self._ended = True
        else:
            self._newest = frame
        self._ready.set()

    async def recv(self) -> Frame:
        while self._newest is None:
            if self._ended:
                raise SourceEnded
            self._ready.clear()
            await self._ready.wait()
        frame, self._newest = self._newest, None
        return frame

    async def stop(self) -> None:
        self._running.clear()
        self._stopping.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None
        if self._capture is not None:
            self._capture.release()
            self._capture = None
