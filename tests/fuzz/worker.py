"""A fuzz worker: `avcall process` file after file in one long-lived Python (the imports and the face
model's first load paid once: hundreds of files fit in a minute or two). One JSON request a line on stdin;
one result line (after RESULT) per file on stdout: the exit status the CLI returned and what it printed on
stderr, or the traceback that escaped it (a crash)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback

RESULT = "FUZZ-RESULT "


def process(path: str, out: str) -> dict:
    from avcall.app.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            rc = main(["process", path, "-o", out, "-q"])
    except BaseException:  # noqa: BLE001 - anything escaping the CLI is the finding
        return {"rc": None, "stderr": err.getvalue(), "traceback": traceback.format_exc()}
    return {"rc": rc, "stderr": err.getvalue()}


if __name__ == "__main__":
    for line in sys.stdin:
        request = json.loads(line)
        print(RESULT + json.dumps(process(request["input"], request["out"])), flush=True)
