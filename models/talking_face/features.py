"""What the voice-to-lips net sees and says, in numpy (the runtime imports this; no torch).

In: 40-band log-mel frames of the voice at a 10 ms hop (the sync judge's filterbank), each frame as it is and
against the running mean of its band over the last seconds (`BandMean`): what makes a mouth open is the voice
rising over its recent level, not a recording's level, colour or steady noise, which the running mean takes
away (the net trained without it barely moved on broadcast audio). Out, per 10 ms: the lip shape (40 points,
as the tracker normalises them, minus the lip model's mean mouth), the opening and the width; the net answers
LOOKAHEAD hops late, so it has heard 60 ms past the frame it draws.
"""

from __future__ import annotations

import numpy as np

from ..sync.features import _MEL, _WIN, HOP, N_FFT, N_MELS

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
    x = np.asarray(audio, np.float32)
    n = len(x) // HOP
    padded = np.concatenate([np.zeros(N_FFT - HOP, np.float32), x])
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    power = np.abs(np.fft.rfft(padded[idx] * _WIN, axis=1)) ** 2
    return np.log(power @ _MEL.T + 1e-6).astype(np.float32)


def lip_targets(lips: np.ndarray, opening: np.ndarray, width: np.ndarray, present: np.ndarray, mean_shape: np.ndarray,
                hops: int, fps: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """Lip features at 25 fps linearly interpolated onto the 10 ms grid: (hops, OUT_DIM), and a (hops,)
    mask of the hops with a face on both sides."""
    t = (np.arange(hops) + 1) * HOP / 16_000 * fps  # in video frames
    i0 = np.clip(np.floor(t).astype(int), 0, len(lips) - 1)
    i1 = np.clip(i0 + 1, 0, len(lips) - 1)
    w = (t - np.floor(t))[:, None].astype(np.float32)
    feats = np.concatenate([(np.asarray(lips, np.float32) - mean_shape.astype(np.float32)).reshape(len(lips), -1),
                            np.asarray(opening, np.float32)[:, None], np.asarray(width, np.float32)[:, None]], 1)
    out = (1 - w) * feats[i0] + w * feats[i1]
    ok = np.asarray(present, bool)
    return out.astype(np.float32), ok[i0] & ok[i1] & (t < len(lips))


def voice_features(audio: np.ndarray) -> np.ndarray:
    """(hops, IN_DIM) net input for a whole clip, from a cold start as a call begins."""
    return BandMean().features(log_mel_frames(audio))
