"""Framing and log-mel spectra: the one place where every net's audio is cut into frames. All nets hop by
10 ms; each one's window and filterbank is named here. Training computes its features through these same
functions, so what a net saw while it learnt is what it sees in a call."""

from __future__ import annotations

import numpy as np

from ..frames import HOP_SAMPLES as HOP, SAMPLE_RATE  # every net hops by 10 ms

N_FFT = 400  # 25 ms Hann: the log-mel window of the sync judge, the voice-to-lips and the voice emotion nets


def mel_filters(n_mels: int, n_fft: int, fmin: float, fmax: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular mel filters (HTK mel scale) from `fmin` to `fmax` Hz."""
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0, np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid))).astype(np.float32)


def frames(x: np.ndarray, size: int, n: int | None = None, centred: bool = False, hop: int = HOP) -> np.ndarray:
    """(n, size) frames of `x` every `hop` samples, zeros outside it; n defaults to len(x) // hop. Causal (the
    default): frame i ends at sample (i + 1) * hop, so it is complete once that hop has arrived. Centred:
    frame i is centred on sample i * hop (offline only)."""
    x = np.asarray(x, np.float32)
    n = len(x) // hop if n is None else n
    left = size // 2 if centred else size - hop
    right = max(0, hop * (n - 1) + size - left - len(x))
    padded = np.concatenate([np.zeros(left, np.float32), x, np.zeros(right, np.float32)])
    return padded[np.arange(size)[None, :] + hop * np.arange(n)[:, None]]


class LogMel:
    """A Hann-windowed log-mel filterbank on N_FFT-sample frames."""

    def __init__(self, n_mels: int, fmin: float, fmax: float, log=np.log, floor: float = 1e-6) -> None:
        self.n_mels, self.log, self.floor = n_mels, log, floor
        self.filters = mel_filters(n_mels, N_FFT, fmin, fmax)
        self.window = np.hanning(N_FFT).astype(np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(..., N_FFT) frames -> (..., n_mels) log mel power."""
        power = np.abs(np.fft.rfft(frames * self.window, axis=-1)) ** 2
        return self.log(power @ self.filters.T + self.floor)


LIPS_VOICE_MEL = LogMel(n_mels=40, fmin=60, fmax=7600)  # the sync judge and the voice-to-lips net: one filterbank
EMOTION_MEL = LogMel(n_mels=64, fmin=50, fmax=8000, log=np.log10, floor=1e-8)  # the voice emotion net
