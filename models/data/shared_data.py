"""Where `../shared/data` (the real recordings used for evaluation) is, if it is there at all, its talking-face
clips (what `avcall eval` and the training recipes that compare on the dev clips run over), and the helpers
that build mixtures from them (a signal looped to a length, a clip's own random stream)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = {".mp4", ".mpg", ".mpeg", ".mkv", ".webm", ".mov", ".avi"}


def shared_data_dir() -> Path | None:
    """$AVCALL_SHARED_DATA, else `../shared/data` beside the checkout or the working folder."""
    candidates = [os.environ.get("AVCALL_SHARED_DATA"),
                  Path(__file__).resolve().parents[2].parent / "shared" / "data",
                  Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def talking_face_clips(data: Path) -> list[Path]:
    return sorted(p for p in (data / "talking_faces").iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def fit_length(x: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """`n` samples of `x` from `offset`, looping `x` as often as needed."""
    if len(x) == 0:
        raise ValueError("fit_length: empty signal")
    idx = (offset + np.arange(n)) % len(x)
    return x[idx]


def clip_rng(seed: int, clip: str):
    """The clip's own random stream: the same for a clip whatever other clips are evaluated with it."""
    return np.random.default_rng([seed, zlib.crc32(clip.encode())])
