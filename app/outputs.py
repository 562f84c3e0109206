"""Outputs that appear whole or not at all: written into a hidden folder beside the target, moved in at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from avcall.pipelines.errors import OutputError


class StagedOutput:
    """`with StagedOutput(outdir) as tmp:` write into `tmp`; on success the files move into `outdir`.

    On an error the staging folder is removed, so a crash never leaves a file that looks whole.
    """

    def __init__(self, outdir: str | Path) -> None:
        self.outdir = Path(outdir)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        try:
            self.outdir.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=".avcall-partial-", dir=self.outdir))
        except OSError as err:
            raise OutputError(f"cannot write to {self.outdir}: {err.strerror or err}") from None
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if isinstance(exc, OutputError):  # a write that failed: named as the user knows it, not in staging
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise OutputError(str(exc).replace(str(self.tmp), str(self.outdir))) from None
        try:
            if exc_type is None:
                for item in sorted(self.tmp.iterdir()):
                    os.replace(item, self.outdir / item.name)
        except OSError as err:
            raise OutputError(f"cannot write to {self.outdir}: {err.strerror or err}") from None
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
