"""Reading the labelled files, the voice windows of a clip, and the scores (numpy; no torch)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from avcall.pipelines.nets.emotion_features import SAMPLE_RATE, WINDOW_SAMPLES, voice_window, voiced_mean
from avcall.pipelines.nets.emotion import CLASSES

N = len(CLASSES)


def load_audio(path: Path) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(1)
    if sr != SAMPLE_RATE:
        x = cv2.resize(x[None], (int(len(x) * SAMPLE_RATE / sr), 1), interpolation=cv2.INTER_LINEAR)[0]
    return x


def speech_span(x: np.ndarray) -> tuple[int, int]:
    """First and last sample of the 20 ms frames within 35 dB of the clip's loudest."""
    frames = len(x) // 320
    if frames == 0:
        return 0, len(x)
    db = 10 * np.log10(np.mean(x[: frames * 320].reshape(frames, 320) ** 2, 1) + 1e-10)
    loud = np.flatnonzero(db > db.max() - 35)
    return int(loud[0] * 320), int((loud[-1] + 1) * 320)


def window_ends(x: np.ndarray, hop_s: float = 0.5) -> list[int]:
    """Where the voice windows of a clip end: every hop_s from 1 s into its speech to just past its end."""
    s, e = speech_span(x)
    first, last = min(s + SAMPLE_RATE, e), min(len(x), e + SAMPLE_RATE // 4)
    ends = list(range(first, last + 1, int(hop_s * SAMPLE_RATE)))
    return ends or [last]


def clip_windows(x: np.ndarray, ends: list[int] | None = None) -> np.ndarray:
    """(windows, N_MELS, WINDOW_FRAMES) of a clip, not yet normalised to its speaker; `ends` default
    window_ends(x) (give the clean clip's for a noisy copy, so both have the same windows)."""
    return np.stack([voice_window(x[max(0, e - WINDOW_SAMPLES):e]) for e in (ends or window_ends(x))])


def speaker_means(windows: list[np.ndarray], speakers: list[str]) -> dict[str, np.ndarray]:
    """Each speaker's mean voiced spectrum over the windows of all their clips: what SpeakerNorm converges to
    over a call with them."""
    out: dict[str, list] = {}
    for w, s in zip(windows, speakers):
        out.setdefault(s, []).extend(m for m in (voiced_mean(x) for x in w) if m is not None)
    return {s: np.mean(v, 0) for s, v in out.items() if v}


def load_face(path: Path) -> np.ndarray:
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise ValueError(f"{path}: not an image")
    return grey


def scores(y: np.ndarray, pred: np.ndarray) -> dict:
    """accuracy, unweighted average recall (over the classes present) and macro F1, and the confusion matrix."""
    cm = np.zeros((N, N), int)
    np.add.at(cm, (y, pred), 1)
    present = cm.sum(1) > 0
    recall = np.diag(cm)[present] / cm.sum(1)[present]
    precision = np.diag(cm) / np.maximum(cm.sum(0), 1)
    rec_all = np.diag(cm) / np.maximum(cm.sum(1), 1)
    f1 = np.where(precision + rec_all > 0, 2 * precision * rec_all / np.maximum(precision + rec_all, 1e-9), 0)
    return {"accuracy": round(float((y == pred).mean()), 4), "uar": round(float(recall.mean()), 4),
            "macro_f1": round(float(f1[present].mean()), 4), "n": int(len(y)), "confusion": cm.tolist()}


def group_indices(keys: list[str]) -> dict[str, list[int]]:
    """The positions of each key in `keys` (items grouped by Item.partner_key)."""
    out: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return out
