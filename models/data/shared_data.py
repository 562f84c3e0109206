"""Where `../shared/data` (the real recordings used for evaluation) is, if it is there at all, and its talking-face
clips (what `avcall eval` and the training recipes that compare on the dev clips run over)."""

from __future__ import annotations

import os
from pathlib import Path

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
