"""Where `../shared/data` (the real recordings used for evaluation) is, if it is there at all."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path | None:
    """$AVCALL_SHARED_DATA, else `../shared/data` beside the checkout or the working folder."""
    candidates = [os.environ.get("AVCALL_SHARED_DATA"),
                  Path(__file__).resolve().parents[2].parent / "shared" / "data",
                  Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None
