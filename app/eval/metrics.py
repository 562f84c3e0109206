"""The scores the evaluations and the benchmarks share: SI-SDR, PESQ wideband and STOI of an output against its
reference, the delay a streaming suppressor's output lags its input by, and the word alignment behind the word
error rate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .data import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019): both signals made zero-mean, the reference scaled to
    its projection of the estimate, 10 log10 of target over residual energy."""
    import numpy as np

    ref = np.asarray(reference, np.float64)
    est = np.asarray(estimate, np.float64)
    if ref.shape != est.shape:
        raise ValueError(f"si_sdr: reference {ref.shape} and estimate {est.shape} differ in length")
    ref = ref - ref.mean()
    est = est - est.mean()
    # a floor at float64 precision: the identity scores ~156 dB, not infinity (the report is strict JSON)
    eps = np.finfo(np.float64).eps * (np.dot(ref, ref) + np.dot(est, est)) + np.finfo(np.float64).tiny
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + eps)
    target = alpha * ref
    residual = est - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(residual, residual) + eps)))

def pesq_wb(reference: np.ndarray, estimate: np.ndarray) -> float | None:
    """PESQ wideband (ITU-T P.862.2) at 16 kHz; None where the library refuses the pair."""
    from pesq import pesq

    try:
        return float(pesq(SAMPLE_RATE, reference.astype("float64"), estimate.astype("float64"), "wb"))
    except Exception:  # noqa: BLE001 -- pesq raises its own errors (too short, no utterance) and C-level ValueErrors
        return None

def stoi_score(reference: np.ndarray, estimate: np.ndarray) -> float | None:
    """STOI (Taal et al. 2011, not extended); None where there are too few speech frames to score."""
    import warnings

    from pystoi import stoi

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi(reference.astype("float64"), estimate.astype("float64"), SAMPLE_RATE, extended=False))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return None
    return value

def measured_delay(suppressor, audio: np.ndarray, most: int = 4000) -> int:
    """Samples a suppressor's streamed output lags its input by: the peak of their cross-correlation."""
    import numpy as np
    from scipy.signal import correlate

    from avcall.pipelines.frames import HOP_SAMPLES

    x = np.concatenate([audio, np.zeros(most, np.float32)])
    x = x[: len(x) // HOP_SAMPLES * HOP_SAMPLES]
    suppressor.reset()
    y = np.concatenate([suppressor.push(x[i:i + HOP_SAMPLES]) for i in range(0, len(x), HOP_SAMPLES)])
    suppressor.reset()
    c = correlate(y.astype(np.float64), audio.astype(np.float64), mode="full", method="fft")
    return int(np.argmax(c[len(audio) - 1:len(audio) - 1 + most]))

def edit_alignment(ref: list[str], hyp: list[str]) -> tuple[int, dict[int, int]]:
    """Word errors (S + D + I) and the reference words matched exactly: {ref index: hyp index}."""
    import numpy as np

    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1), np.int32)
    d[:, 0], d[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]))
    hits, i, j = {}, n, m
    while i > 0 and j > 0:
        if d[i, j] == d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            if ref[i - 1] == hyp[j - 1]:
                hits[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif d[i, j] == d[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return int(d[n, m]), hits
