"""What the enhancer sees, computed the same way in training (numpy, then torch) and at run time (numpy):
the mixture's STFT (20 ms window, 10 ms hop: 20 ms of algorithmic latency) and the lip stream held at the
audio hop on the pts clock. No torch here: the runtime imports this module."""

from __future__ import annotations

import numpy as np

from .spectrum import HOP, SAMPLE_RATE, frames

WINDOW = 320  # 20 ms: the algorithmic latency of the enhancer
N_FREQ = WINDOW // 2 + 1
LIP_DIM = 40 * 2 + 3  # shape, opening, width, face present
_WIN = np.sqrt(np.hanning(WINDOW + 1)[:WINDOW]).astype(np.float32)  # sqrt-Hann: perfect reconstruction at 50%


def stft(x: np.ndarray) -> np.ndarray:
    """(T, N_FREQ) complex64; frame t covers samples [t*HOP - WINDOW + HOP, t*HOP + HOP): causal, so
    frame t is complete once sample t*HOP + HOP - 1 has arrived."""
    return np.fft.rfft(frames(x, WINDOW) * _WIN, axis=1).astype(np.complex64)


def istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Overlap-add inverse of stft(): sample s of the output is final once frame s // HOP + 1 is in."""
    frames = np.fft.irfft(spec, n=WINDOW, axis=1).astype(np.float32) * _WIN
    out = np.zeros(HOP * len(spec) + WINDOW - HOP, np.float32)
    for t in range(len(spec)):
        out[t * HOP:t * HOP + WINDOW] += frames[t]
    return _pad_to(out[WINDOW - HOP:], length)


def _pad_to(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if len(x) >= n else np.concatenate([x, np.zeros(n - len(x), x.dtype)])


def log_power(spec: np.ndarray) -> np.ndarray:
    return np.log(np.abs(spec) ** 2 + 1e-8).astype(np.float32)


def lip_stream(lips: np.ndarray, opening: np.ndarray, width: np.ndarray, present: np.ndarray, fps: float,
               n_hops: int, offset: float = 0.0, mean_shape: np.ndarray | None = None) -> np.ndarray:
    """(n_hops, LIP_DIM): for audio hop t (audio time t*HOP/SAMPLE_RATE), the latest video frame shown by
    then (frame i is at i/fps - offset in audio time). Missing faces are zeros with present = 0."""
    hop_times = (np.arange(n_hops) * HOP + HOP) / SAMPLE_RATE
    idx = np.floor((hop_times + offset) * fps + 1e-6).astype(int)
    valid = (idx >= 0) & (idx < len(lips))
    idx = np.clip(idx, 0, max(len(lips) - 1, 0))
    out = np.zeros((n_hops, LIP_DIM), np.float32)
    if len(lips) == 0:
        return out
    ok = valid & present[idx].astype(bool)
    shape = lips[idx].reshape(n_hops, -1) - (0 if mean_shape is None else mean_shape.reshape(1, -1))
    out[:, :80] = np.where(ok[:, None], shape * 5.0, 0.0)
    out[:, 80] = np.where(ok, opening[idx] * 5.0, 0.0)
    out[:, 81] = np.where(ok, (width[idx] - 1.0) * 5.0, 0.0)
    out[:, 82] = ok.astype(np.float32)
    return out
