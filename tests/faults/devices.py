"""Stand-ins for a camera and a microphone that misbehave on cue, driving the real CameraSource and
MicrophoneSource code (only the OpenCV capture and the PortAudio callback are replaced)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from avcall.pipelines.sources.camera import CameraSource
from avcall.pipelines.sources.microphone import MicrophoneSource

WIDTH, HEIGHT, FPS = 64, 48, 30


@dataclass
class Outage:
    """From `start` to `end` seconds after `began` the device is gone."""

    start: float = float("inf")
    end: float = float("inf")
    began: float = field(default_factory=time.monotonic)

    def gone(self) -> bool:
        return self.start <= time.monotonic() - self.began < self.end


class FakeCapture:
    """cv2.VideoCapture's interface: frames at FPS, none (and no reopening) while the outage lasts."""

    open_count = 0  # captures opened and not yet released, across instances

    def __init__(self, outage: Outage) -> None:
        self.outage = outage
        self.opened = not outage.gone()
        FakeCapture.open_count += 1

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def read(self):
        time.sleep(1 / FPS)
        if not self.opened or self.outage.gone():
            return False, None
        return True, np.full((HEIGHT, WIDTH, 3), 90, np.uint8)

    def get(self, prop: int) -> float:
        import cv2

        return {cv2.CAP_PROP_FRAME_WIDTH: WIDTH, cv2.CAP_PROP_FRAME_HEIGHT: HEIGHT}.get(prop, 0.0)

    def set(self, prop: int, value: float) -> bool:
        return True

    def release(self) -> None:
        if self.opened is not None:
            FakeCapture.open_count -= 1
            self.opened = None


def flaky_camera(outage: Outage, clock) -> CameraSource:
    return CameraSource("usb-camera", clock=clock, reconnect=True, retry_s=0.1,
                        opener=lambda device: FakeCapture(outage))


class FakeMic(MicrophoneSource):
    """A 48 kHz microphone whose PortAudio callback is a thread of ours: 10 ms blocks at real time, none
    while the outage lasts (the device skips those samples, as a real one does when it stalls)."""

    RATE = 48_000

    def __init__(self, outage: Outage, clock, stall_s: float = 1.0) -> None:
        super().__init__(clock=clock, stall_s=stall_s)
        self.outage = outage
        self._feeding = threading.Event()
        self._feeder: threading.Thread | None = None

    async def start(self) -> None:
        self.open_blocks(self.RATE)
        self._feeding.set()
        self._feeder = threading.Thread(target=self._feed, name="fake-mic", daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        block = self.RATE // 100
        tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(block) / self.RATE)).astype(np.float32)[:, None]
        due = time.monotonic()
        while self._feeding.is_set():
            due += 0.01
            time.sleep(max(0.0, due - time.monotonic()))
            if not self.outage.gone():
                self._on_block(tone, block, None, None)

    async def stop(self) -> None:
        self._feeding.clear()
        if self._feeder is not None:
            self._feeder.join()
            self._feeder = None
        await super().stop()
