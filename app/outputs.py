"""Outputs that appear whole or not at all: written into a hidden folder beside the target, moved in at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from avcall.pipelines.errors import OutputError


class StagedOutput:
    """`with StagedOutput(outdir) as tmp:` write into `tmp`; on success the files move into `outdir`.

    On an error the staging folder is removed, so a crash never leaves a file that looks whole, and so are
    the folders it made for `outdir` (bad input leaves nothing behind, not even an empty folder).
    """

    def __init__(self, outdir: str | Path) -> None:
        self.outdir = Path(outdir)
        self.tmp: Path | None = None
        self._made: list[Path] = []  # the folders this made, deepest first

    def __enter__(self) -> Path:
        try:
            self._made = [p for p in (self.outdir, *self.outdir.parents) if not p.exists()]
            self.outdir.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=".avcall-partial-", dir=self.outdir))
        except OSError as err:
            self._unmake()
            raise OutputError(f"cannot write to {self.outdir}: {err.strerror or err}") from None
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self._unmake()
            if isinstance(exc, OutputError):  # a write that failed: named as the user knows it, not in staging
                raise OutputError(str(exc).replace(str(self.tmp), str(self.outdir))) from None
            return
        try:
            for item in sorted(self.tmp.iterdir()):
                os.replace(item, self.outdir / item.name)
        except OSError as err:
            raise OutputError(f"cannot write to {self.outdir}: {err.strerror or err}") from None
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _unmake(self) -> None:
        """The folders made for the output, removed while empty (another run may have written there since)."""
        for folder in self._made:
            try:
                folder.rmdir()
            except OSError:
                return
