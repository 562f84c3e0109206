"""A face's lips over a clip, frame by frame: what the tracker measures, the voice net draws and the renderer
takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LIP_FPS = 25.0


@dataclass
class LipTrack:
    """Per video frame at LIP_FPS: the normalised lip shape (T, 40, 2) and the tracker's derived values."""

    lips: np.ndarray
    opening: np.ndarray
    width: np.ndarray
    face_present: np.ndarray
    confidence: np.ndarray
    fps: float = LIP_FPS

    @property
    def pts(self) -> np.ndarray:
        return np.arange(len(self.lips)) / self.fps

    def __len__(self) -> int:
        return len(self.lips)
