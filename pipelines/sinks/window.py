"""Window sink: shows the video frames in an OpenCV window (closing it or pressing q ends the session)."""

from __future__ import annotations

import os
from typing import Sequence

import cv2

from ..errors import DeviceError
from ..frames import Frame, VideoFrame
from ..stage import Stage


class WindowClosed(Exception):
    """The user closed the window or pressed q."""


class WindowSink(Stage):
    accepts = (VideoFrame,)

    def __init__(self, title: str = "avcall") -> None:
        super().__init__("window_out")
        self.title = title

    async def start(self) -> None:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise DeviceError("no display to show a window on (DISPLAY is not set); drop --show")
        await self.in_worker(cv2.namedWindow, self.title, cv2.WINDOW_NORMAL)

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if await self.in_worker(self._show, frame.image):
            raise WindowClosed
        return [frame]

    def _show(self, image) -> bool:
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        return key == ord("q") or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1

    async def stop(self) -> None:
        await self.in_worker(cv2.destroyWindow, self.title)
