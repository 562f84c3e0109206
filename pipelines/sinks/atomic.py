"""Files that appear whole or not at all: written under a temporary name beside the target and renamed
into place only once complete, so a crash, a full disk or an error never leaves a file that looks whole."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import OutputError


def partial_path(path: str | Path) -> Path:
    """`.NAME.PID.partial.EXT` in the target's folder: hidden, says what it is, and keeps the extension
    that writers (PyAV, libsndfile, numpy) go by."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


def cannot_write(path: str | Path, err: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {err.strerror or err}")


def commit(partial: Path, path: str | Path) -> None:
    """Rename the completed `partial` onto `path` (atomic within a folder); a failure removes it."""
    try:
        os.replace(partial, path)
    except OSError as err:
        discard(partial)
        raise cannot_write(path, err) from None


def discard(partial: Path) -> None:
    try:
        partial.unlink(missing_ok=True)
    except OSError:
        pass


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> None:
    """`write(partial)` then rename it onto `path`; any failure removes the partial file, and an OSError
    (read-only folder, disk full) becomes an OutputError naming `path`."""
    partial = partial_path(path)
    try:
        write(partial)
    except OSError as err:
        discard(partial)
        raise cannot_write(path, err) from None
    except BaseException:
        discard(partial)
        raise
    commit(partial, path)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda partial: partial.write_text(text))
