"""Lip-track sink: `lips.npz` with, per video frame, pts, the lip features and the face-present flag
(written whole at the end of the stream: see atomic.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..frames import LIP_POINTS, Frame, LipFeatures
from ..stage import Stage
from .atomic import write_atomic


def save_lips(path: str | Path, rows: Sequence[LipFeatures]) -> None:
    write_atomic(path, lambda partial: _savez(partial, rows))


def _savez(path: Path, rows: Sequence[LipFeatures]) -> None:
    np.savez_compressed(
        path,
        pts=np.array([r.pts for r in rows], np.float64),
        lips=np.array([r.shape for r in rows], np.float32).reshape(-1, LIP_POINTS, 2),
        opening=np.array([r.opening for r in rows], np.float32),
        width=np.array([r.width for r in rows], np.float32),
        face_present=np.array([r.present for r in rows], bool),
        confidence=np.array([r.confidence for r in rows], np.float32),
    )


class LipsSink(Stage):
    accepts = (LipFeatures,)

    def __init__(self, path: str | Path) -> None:
        super().__init__("lips_out")
        self.path = Path(path)
        self.rows: list[LipFeatures] = []

    async def process(self, frame: Frame) -> Sequence[Frame]:
        self.rows.append(frame)
        return [frame]

    async def flush(self) -> Sequence[Frame]:
        await self.in_worker(save_lips, self.path, self.rows)
        return ()
