"""Outputs that cannot be written: a read-only folder is a clear error at start, a disk that fills is a clear
error when the write fails; files are written under a temporary name and renamed when complete, so neither
an error nor a kill -9 leaves a file that looks whole."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from avcall.pipelines.frames import AudioFrame, VideoFrame
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.sinks.mp4 import Mp4Sink
from avcall.pipelines.sinks.wav import WavSink
from avcall.pipelines.sources.synthetic import SyntheticSource
from avcall.pipelines.stage import Stage
from tests.conftest import write_media

CLI = [sys.executable, "-m", "avcall.app.cli"]


def mounts_work() -> str | None:
    """Why a private tmpfs cannot be mounted here (None: it can)."""
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=4k tmpfs /mnt"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"no private mounts here ({probe.stderr.strip()})"


def process_on_tmpfs(folder: Path, options: str, clip: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`avcall process clip -o folder` with a tmpfs mounted at `folder` (`options`: ro, size=...) in a mount
    namespace of its own (root sees a read-only or full disk as any user does): (result, files left there)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = ('mount -t tmpfs -o "$1" tmpfs "$2" || exit 99; shift 2; "$@" 2>&1; echo "rc=$?"; '
              'find "$OUT" -mindepth 1 -printf "%P\\n"')
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", options,
                             str(folder), *CLI, "process", str(clip), "-o", str(folder), "-q"],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "OUT": str(folder)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rc_at = next(i for i, line in enumerate(lines) if line.startswith("rc="))
    output = subprocess.CompletedProcess(result.args, int(lines[rc_at][3:]), "", "\n".join(lines[:rc_at]))
    return output, lines[rc_at + 1:]


@pytest.fixture(scope="module")
def tmpfs() -> None:
    reason = mounts_work()
    if reason:
        pytest.skip(reason)


def test_read_only_output_folder_is_a_clear_error_at_start(tmp_path, tmpfs):
    clip = write_media(tmp_path / "clip.mp4", seconds=1.0)
    result, left = process_on_tmpfs(tmp_path / "out", "ro", clip)
    assert result.returncode == 2
    assert result.stderr == f"avcall: error: cannot write to {tmp_path / 'out'}: Read-only file system"
    assert left == []


def test_full_disk_is_a_clear_error_and_leaves_nothing_half_written(tmp_path, tmpfs):
    clip = write_media(tmp_path / "clip.mp4", seconds=2.0, size=(160, 120))  # its annotated.mp4: about 18 kB
    result, left = process_on_tmpfs(tmp_path / "out", "size=8k", clip)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == f"avcall: error: cannot write {tmp_path / 'out' / 'annotated.mp4'}: No space left on device"
    assert left == []  # the partial files and their staging folder are gone


def test_killed_mid_run_leaves_no_file_that_looks_whole(tmp_path):
    clip = write_media(tmp_path / "long.mp4", seconds=20.0, size=(320, 240))
    out = tmp_path / "out"
    proc = subprocess.Popen([*CLI, "process", str(clip), "-o", str(out), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob(".avcall-partial-*/.annotated.*.partial.mp4")):  # it is writing the video
            assert time.monotonic() < deadline and proc.poll() is None, "the run never started writing"
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = [p.relative_to(out) for p in out.rglob("*") if p.is_file()]
    assert left, "the run wrote nothing before it was killed"
    assert all(p.parts[0].startswith(".avcall-partial-") for p in left), left  # only inside the hidden staging
    assert all(".partial." in p.name for p in left if p.suffix == ".mp4"), left  # named for what they are
    assert not (out / "annotated.mp4").exists() and not (out / "lips.npz").exists()


class FailAt(Stage):
    """A stage the call cannot go without that fails at `pts` (ends the run with its error)."""

    accepts = (VideoFrame, AudioFrame)

    def __init__(self, pts: float | None) -> None:
        super().__init__("fail_at")
        self.pts = pts

    async def process(self, frame):
        if self.pts is not None and frame.pts >= self.pts:
            raise RuntimeError("the run fails")
        return [frame]


@pytest.mark.parametrize("fails", [False, True])
def test_sinks_write_under_a_temporary_name_and_rename_when_complete(tmp_path, fails):
    sinks = [Mp4Sink(tmp_path / "a.mp4", video_size=(64, 48), fps=25), WavSink(tmp_path / "a.wav")]
    pipeline = Pipeline([SyntheticSource(1.0, size=(64, 48))], [FailAt(0.5 if fails else None), *sinks], live=False)
    if fails:
        with pytest.raises(RuntimeError, match="the run fails"):
            asyncio.run(pipeline.run())
        assert list(tmp_path.iterdir()) == []  # neither the files nor their partial versions
    else:
        asyncio.run(pipeline.run())
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "a.wav"]
        import soundfile

        audio, _ = soundfile.read(tmp_path / "a.wav")
        assert len(audio) == 16_000 and np.isfinite(audio).all()
