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

    def take(self, idx: np.ndarray, fps: float | None = None) -> LipTrack:
        """The frames at `idx` (indices into this track, in that order) as a track at `fps` (default: this one's)."""
        return LipTrack(self.lips[idx], self.opening[idx], self.width[idx], self.face_present[idx],
                        self.confidence[idx], self.fps if fps is None else fps)

    def at_fps(self, fps: float, frames: int | None = None) -> LipTrack:
        """This track at `fps` (`frames` long, default: as long as it is): the nearest frame for each new one."""
        n = round(len(self) * fps / self.fps) if frames is None else frames
        return self.take(np.clip(np.round(np.arange(n) * self.fps / fps).astype(int), 0, max(len(self) - 1, 0)), fps)

    def frames(self, audio_offset: float = 0.0) -> list[LipFeatures]:
        """The track as the live path gets it, frame by frame on the audio's clock: frame i at
        i / fps - audio_offset seconds."""
        return [LipFeatures(pts=i / self.fps - audio_offset, present=bool(self.face_present[i]),
                            confidence=float(self.confidence[i]), shape=self.lips[i].astype(np.float32),
                            opening=float(self.opening[i]), width=float(self.width[i])) for i in range(len(self))]
