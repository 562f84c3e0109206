"""The voice-to-lips net at run time (onnxruntime, no torch): hop by hop for live use, or a whole clip as a
LipTrack at 25 fps for the renderer and the evaluations; and what it sees, computed the same way in training.

In: 40-band log-mel frames of the voice at a 10 ms hop (the sync judge's filterbank), each frame as it is and
against the running mean of its band over the last seconds (`BandMean`): what makes a mouth open is the voice
rising over its recent level, not a recording's level, colour or steady noise, which the running mean takes
away (the net trained without it barely moved on broadcast audio). Out, per 10 ms: the lip shape (40 points,
as the tracker normalises them, minus the lip model's mean mouth), the opening and the width; the net answers
LOOKAHEAD hops late, so it has heard 60 ms past the frame it draws.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..frames import VIDEO_FPS as FPS
from .spectrum import HOP, LIPS_VOICE_MEL, N_FFT, frames

N_MELS = LIPS_VOICE_MEL.n_mels
LOOKAHEAD = 6  # hops: 60 ms
OUT_DIM = 82
HOPS_PER_VIDEO = 4  # 25 fps
BAND_MEAN_HOPS = 200  # 2 s: the reach of each band's running mean
IN_DIM = 2 * N_MELS  # the log-mel frame, and the same against its bands' running means


class BandMean:
    """The causal running mean of each log-mel band: the mean of all hops so far over the first
    BAND_MEAN_HOPS, an exponential mean of that reach after. `features` carries it across calls, so a
    stream fed hop by hop and a whole clip give the same."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.mean = np.zeros(N_MELS, np.float64)
        self.count = 0

    def features(self, mel: np.ndarray) -> np.ndarray:
        """(hops, N_MELS) raw log-mel -> (hops, IN_DIM) net input."""
        relative = np.empty_like(mel, dtype=np.float32)
        for i, frame in enumerate(mel):
            self.count += 1
            self.mean += (frame - self.mean) / min(self.count, BAND_MEAN_HOPS)
            relative[i] = frame - self.mean
        return np.concatenate([mel, relative], 1).astype(np.float32)


def log_mel_frames(audio: np.ndarray) -> np.ndarray:
    """(hops, N_MELS) raw log-mel, frame i ending at sample (i + 1) * HOP (causal framing)."""
    return LIPS_VOICE_MEL(frames(audio, N_FFT)).astype(np.float32)


def voice_features(audio: np.ndarray) -> np.ndarray:
    """(hops, IN_DIM) net input for a whole clip, from a cold start as a call begins."""
    return BandMean().features(log_mel_frames(audio))


WEIGHTS = "talking_face.onnx"


class VoiceToLipsStream:
    def __init__(self, path: str | Path | None = None, session=None) -> None:
        from ..runtime import require_weights, shared_session

        self.session = session or shared_session(path or require_weights(WEIGHTS), threads=1)
        from ..face.lip_model import LipModel

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
        mel = LIPS_VOICE_MEL(self._frame).astype(np.float32)
        feats = self._band_mean.features(mel[None])
        out, self.state = self.session.run(None, {"features": feats[None], "state_in": self.state})
        return out[0, 0]

    def clip(self, audio: np.ndarray, frames: int | None = None):
        """A LipTrack at 25 fps for a whole clip (frame i at i / 25 s of the audio): `frames` frames (a video's
        count; the voice taken as silent past its end), or as many as the audio starts, ceil(seconds * 25)."""
        from ..face.lip_track import LipTrack

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
