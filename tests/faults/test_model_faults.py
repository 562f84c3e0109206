"""Models that fail: a missing or damaged ONNX file is a one-line error naming it, at start (the only faults
that end a run); a model that throws during inference is passed by, said so, and the call goes on."""

from __future__ import annotations

import asyncio
import json
import shutil

import av
import numpy as np
import pytest
import soundfile as sf

from avcall.app.process import ProcessConfig, run_process
from avcall.pipelines.runtime import weights_dir
from avcall.pipelines.sources.file import FileSource
from tests.conftest import read_all, run_cli, write_media


def shipped(name: str) -> None:
    if not (weights_dir() / name).is_file():
        pytest.skip(f"{name} is not shipped in {weights_dir()}")


def weights_copy(tmp_path, damaged: str | None = None, missing: str | None = None):
    """The shipped weights in a folder of their own, one file damaged (cut in half) or missing."""
    folder = tmp_path / "weights"
    shutil.copytree(weights_dir(), folder)
    if damaged:
        data = (folder / damaged).read_bytes()
        (folder / damaged).write_bytes(data[: len(data) // 2])
    if missing:
        (folder / missing).unlink()
    return folder


FAULTS = {  # (shipped file, how it fails, extra process flags)
    "enhancer missing": ("avse_ao.onnx", "missing", ["--enhance", "avcall-ao"]),
    "enhancer damaged": ("avse_ao.onnx", "damaged", ["--enhance", "avcall-ao"]),
    "sync judge damaged": ("sync_lips.onnx", "damaged", []),
    "talking face damaged": ("talking_face.onnx", "damaged", ["--avatar", "voice"]),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_a_model_that_cannot_load_is_one_line_naming_the_file(tmp_path, monkeypatch, case):
    name, how, flags = FAULTS[case]
    shipped(name)
    folder = weights_copy(tmp_path, **{how: name})
    monkeypatch.setenv("AVCALL_WEIGHTS_DIR", str(folder))
    clip = write_media(tmp_path / "clip.mp4", seconds=0.6, size=(64, 48))
    out = tmp_path / "out"
    result = run_cli("process", str(clip), "-o", str(out), "-q", *flags)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("avcall: error: ") and str(folder / name) in lines[0]
    assert ("missing" if how == "missing" else "cannot be loaded") in lines[0]
    assert not out.exists() or list(out.iterdir()) == []  # it stopped before writing anything


def every_third(method):
    calls = [0]

    def flaky(*args, **kwargs):
        calls[0] += 1
        if calls[0] % 3 == 0:
            raise RuntimeError("injected inference failure")
        return method(*args, **kwargs)

    return flaky


def test_a_tracker_that_throws_is_passed_by_and_said_so(tmp_path, monkeypatch, capsys):
    from avcall.pipelines.stages.face_tracker import FaceTracker

    monkeypatch.setattr(FaceTracker, "observe", every_third(FaceTracker.observe))
    clip = write_media(tmp_path / "clip.mp4", seconds=1.2, size=(96, 72), fps=25)
    result = run_process(ProcessConfig(input=clip, outdir=tmp_path / "out"), progress=False)
    telemetry = json.loads((tmp_path / "out" / "telemetry.json").read_text())
    failures = telemetry["incidents"]["counts"]["stage_failed:face_tracker"]
    assert failures == 10  # every third of the 30 frames
    (event,) = [e for e in telemetry["incidents"]["events"] if e["kind"] == "stage_failed"]
    assert event["stage"] == "face_tracker" and "injected inference failure" in event["error"]
    assert telemetry["stages"]["face_tracker"]["passed_through"] == failures
    with av.open(str(tmp_path / "out" / "annotated.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 30  # every frame went on, drawn or not
    assert result.video_frames == 30 - failures  # lip rows for the frames the tracker saw
    assert "face_tracker failed on 10 frame(s) and was passed through" in capsys.readouterr().err


def test_an_enhancer_that_throws_passes_the_voice_through(tmp_path, monkeypatch):
    from avcall.pipelines.suppressors import DEFAULT
    from avcall.pipelines.features import enhancers
    from avcall.pipelines.suppressors.base import Suppressor

    if DEFAULT not in enhancers():
        pytest.skip(f"{DEFAULT} does not ship on this machine")
    monkeypatch.setattr(Suppressor, "push", every_third(Suppressor.push))
    clip = write_media(tmp_path / "clip.mp4", seconds=1.0, size=(64, 48))
    run_process(ProcessConfig(input=clip, outdir=tmp_path / "out", enhance=DEFAULT), progress=False)
    telemetry = json.loads((tmp_path / "out" / "telemetry.json").read_text())
    counts = telemetry["incidents"]["counts"]
    failures = counts["stage_failed:speech_enhancer"]
    assert 33 <= failures <= 35  # every third of the 100 hops and of the few that bring out the delayed end
    assert counts["audio_passthrough_samples"] == failures * 160
    enhanced, rate = sf.read(tmp_path / "out" / "enhanced.wav", dtype="float32")
    heard = asyncio.run(read_all(FileSource(clip, video=False)))
    assert rate == 16_000 and len(enhanced) == sum(len(f.samples) for f in heard)  # none of the voice lost
    assert np.sqrt(np.mean(enhanced ** 2)) > 1e-3
