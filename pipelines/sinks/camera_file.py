"""A file-backed virtual camera: a pyvirtualcam backend (the interface v4l2loopback and OBS's backends
implement) that appends each frame to a file instead of a device. `--camera-out file:PATH` picks it, so the
frames a call app would receive can be checked where no loopback device exists (tests, CI).

PATH gets the frames, raw, one after the other; PATH.json their format (width, height, fps, fourcc), and at
close their count and the monotonic time each one was sent.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


class FileCamera:
    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw) -> None:
        if not device:
            raise ValueError("the file camera needs a file to write (file:PATH)")
        self.path = Path(device)
        self.meta = {"width": width, "height": height, "fps": fps, "fourcc": fourcc}
        self._file = open(self.path, "wb")
        self._times: list[float] = []

    def send(self, frame: np.ndarray) -> None:
        self._file.write(frame.tobytes())
        self._times.append(time.monotonic())

    def close(self) -> None:
        self._file.close()
        meta = {**self.meta, "frames": len(self._times), "sent_at": self._times}
        Path(f"{self.path}.json").write_text(json.dumps(meta))

    def device(self) -> str:
        return str(self.path)

    def native_fourcc(self) -> int:
        return self.meta["fourcc"]


def register() -> None:
    import pyvirtualcam

    pyvirtualcam.register_backend("file", FileCamera)


def read_frames(path: str | Path) -> tuple[dict, np.ndarray]:
    """(format and times, frames as (n, height, width, 3) uint8 BGR) of a file camera's output."""
    meta = json.loads(Path(f"{path}.json").read_text())
    frames = np.fromfile(path, np.uint8).reshape(-1, meta["height"], meta["width"], 3)
    return meta, frames
