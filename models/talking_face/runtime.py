"""The voice-to-lips net at run time (onnxruntime, no torch): hop by hop for live use, or a whole clip as a
LipTrack at 25 fps for the renderer and the evaluations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..sync.features import _MEL, _WIN, HOP, N_FFT
from .features import HOPS_PER_VIDEO, LOOKAHEAD, BandMean, voice_features

WEIGHTS = "talking_face.onnx"
FPS = 25.0


class VoiceToLipsStream:
    def __init__(self, path: str | Path | None = None, session=None) -> None:
        from ...export.runtime import require_weights, shared_session

        self.session = session or shared_session(path or require_weights(WEIGHTS), threads=1)
        from ..data.lipmodel import LipModel

        self.mean = LipModel.load().mean.astype(np.float32)
        shape = self.session.get_inputs()[1].shape
        self.state_shape = (int(shape[0]), 1, int(shape[2]))
        self.reset()

    def reset(self) -> None:
        self.state = np.zeros(self.state_shape, np.float32)
        self._frame = np.zeros(N_FFT, np.float32)
        self._band_mean = BandMean()

    def step(self, hop: np.ndarray) -> np.ndarray:
        """One 10 ms hop in -> the lip features (82) of LOOKAHEAD hops ago (shape offsets, opening, width)."""
        self._frame[:-HOP] = self._frame[HOP:]
        self._frame[-HOP:] = hop
        mel = np.log((np.abs(np.fft.rfft(self._frame * _WIN)) ** 2) @ _MEL.T + 1e-6).astype(np.float32)
        feats = self._band_mean.features(mel[None])
        out, self.state = self.session.run(None, {"features": feats[None], "state_in": self.state})
        return out[0, 0]

    def clip(self, audio: np.ndarray, frames: int | None = None):
        """A LipTrack at 25 fps for a whole clip (frame i at i / 25 s of the audio): `frames` frames (a video's
        count; the voice taken as silent past its end), or as many as the audio starts, ceil(seconds * 25)."""
        from ..data.example import LipTrack

        audio = np.asarray(audio, np.float32)
        if frames is None:
            frames = -(-len(audio) // (HOP * HOPS_PER_VIDEO))
        need = frames * HOP * HOPS_PER_VIDEO  # hop 4i - 1 ends at frame i's moment + 40 ms: covered
        audio = np.concatenate([audio[:need], np.zeros(max(need - len(audio), 0), np.float32)])
        feats = voice_features(np.concatenate([audio, np.zeros(LOOKAHEAD * HOP, np.float32)]))
        out, _ = self.session.run(None, {"features": feats[None], "state_in": np.zeros(self.state_shape, np.float32)})
        hops = out[0, LOOKAHEAD:]
        idx = np.clip(np.arange(len(hops) // HOPS_PER_VIDEO) * HOPS_PER_VIDEO - 1, 0, max(len(hops) - 1, 0))
        rows = hops[idx]
        n = len(rows)
        lips = rows[:, :80].reshape(n, 40, 2) + self.mean
        return LipTrack(lips.astype(np.float32), np.maximum(rows[:, 80], 0).astype(np.float32),
                        rows[:, 81].astype(np.float32), np.ones(n, bool), np.ones(n, np.float32), FPS)
