"""Media fuzzing: a few hundred mutated and truncated files, in every container the file source opens, through
`avcall process`: each is processed (the outputs whole) or refused with one clear line (exit status 2, no
traceback, nothing written); none crashes, none hangs past its timeout."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.fuzz.corpus import SEEDS, make_mutants, make_seeds
from tests.fuzz.worker import RESULT

SEED = 20251123  # the mutants' random seed: the same set every run
COUNT = 300  # mutants; with the 12 seed files themselves, 312 files
TIMEOUT_S = 30.0  # per file: the files are well under a second long; longer than this is a hang
ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = {"annotated.mp4", "lips.npz", "telemetry.json"}


class Worker:
    """tests/fuzz/worker.py in a subprocess, restarted after a crash or a hang."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz.worker"], cwd=ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(RESULT):
                self.lines.put(line[len(RESULT):])
        self.lines.put(None)  # the worker died

    def process(self, path: Path, out: Path) -> dict:
        self.proc.stdin.write(json.dumps({"input": str(path), "out": str(out)}) + "\n")
        self.proc.stdin.flush()
        try:
            line = self.lines.get(timeout=TIMEOUT_S)
        except queue.Empty:
            return {"outcome": "hang"}
        if line is None:
            return {"outcome": "crash", "why": f"the worker died (exit status {self.proc.wait()})"}
        return json.loads(line)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def judge(result: dict, out: Path) -> str:
    """processed, refused, or what went wrong."""
    if "outcome" in result:
        return result["outcome"]
    if result["rc"] is None:
        return "crash"
    lines = result["stderr"].strip().splitlines()
    written = {p.name for p in out.iterdir()} if out.exists() else set()
    if result["rc"] == 0:
        whole = OUTPUTS <= written and all((out / name).stat().st_size > 0 for name in OUTPUTS)
        return "processed" if whole else "processed without its outputs"
    if result["rc"] == 2 and len(lines) == 1 and lines[0].startswith("avcall: error: ") and not written:
        return "refused"
    return "unclear error"


def test_mutated_media_is_processed_or_refused_never_a_crash_or_a_hang(tmp_path):
    seeds = make_seeds(tmp_path / "seeds")
    files = seeds + make_mutants(seeds, tmp_path / "mutants", COUNT, SEED)
    outcomes: Counter[str] = Counter()
    findings = []
    worker = Worker()
    try:
        for i, path in enumerate(files):
            out = tmp_path / "out" / str(i)
            result = worker.process(path, out)
            outcome = judge(result, out)
            outcomes[outcome] += 1
            if outcome not in ("processed", "refused"):
                findings.append((path.name, outcome, result.get("traceback") or result.get("stderr") or result))
                worker.close()
                worker = Worker()
    finally:
        worker.close()
    print(f"fuzz: seed {SEED}, {len(files)} files ({len(SEEDS)} containers): {dict(outcomes)}")
    assert not findings, "\n".join(f"{name}: {outcome}\n{detail}" for name, outcome, detail in findings)
    assert outcomes["processed"] >= len(SEEDS) and outcomes["refused"] > COUNT // 4  # both paths exercised


def test_a_video_stream_of_unknown_codec_is_refused_not_a_crash(tmp_path):
    """A finding of this fuzzing: an mp4 cut inside its video's sample description opens with a video stream
    that has no codec at all, which crashed the file source's probe."""
    import av

    from avcall.pipelines.errors import InputError
    from avcall.pipelines.sources.file import probe

    data = make_seeds(tmp_path / "seeds")[0].read_bytes()  # clip.mp4: its index (moov) at the end
    start, end = data.find(b"stsd"), data.find(b"mp4v") + 4
    codecless = 0
    for cut in range(start, end):
        path = tmp_path / f"cut{cut}.mp4"
        path.write_bytes(data[:cut])
        try:
            with av.open(str(path)) as container:
                codecless += any(s.codec_context is None for s in container.streams.video)
        except av.FFmpegError:
            pass
        with pytest.raises(InputError) as refused:
            probe(path)
        assert "\n" not in str(refused.value)
    assert codecless  # the case that crashed is among them
