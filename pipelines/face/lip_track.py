"""A face's lips over a clip, frame by frame: what the tracker measures, the voice net draws and the renderer
takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..frames import VIDEO_FPS as LIP_FPS, LipFeatures


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

    def frames(self, audio_offset: float = 0.0) -> list[LipFeatures]:
        """The track as the live path gets it, frame by frame on the audio's clock: frame i at
        i / fps - audio_offset seconds."""
        return [LipFeatures(pts=i / self.fps - audio_offset, present=bool(self.face_present[i]),
                            confidence=float(self.confidence[i]), shape=self.lips[i].astype(np.float32),
                            opening=float(self.opening[i]), width=float(self.width[i])) for i in range(len(self))]
