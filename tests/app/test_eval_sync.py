"""`avcall eval sync --candidate DIR`: a judge not yet shipped scored beside the shipped one in one run. The
candidate here is the shipped judge with its weights scaled, so its figures differ: the test fails if
`--candidate` is not what is scored."""

from __future__ import annotations

import json

from avcall.app.cli import main
from avcall.pipelines.runtime import require_weights
from avcall.pipelines.nets.sync_judge import AUDIO_WEIGHTS, LIPS_WEIGHTS
from tests.app.scaled_onnx import scaled_weights

CLIP = "LRS2_deepavsr_00004.mp4"


def test_a_candidate_judge_is_scored_beside_the_shipped_one(shared_data, tmp_path):
    data = tmp_path / "data"
    for folder in ("talking_faces", "speech", "noise"):
        (data / folder).mkdir(parents=True)
    (data / "talking_faces" / CLIP).symlink_to(shared_data / "talking_faces" / CLIP)
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    for name in (LIPS_WEIGHTS, AUDIO_WEIGHTS):  # the shipped judge, its weights scaled: another judge
        scaled_weights(require_weights(name), candidate / name, 0.7)
    out = tmp_path / "sync.json"
    assert main(["eval", "sync", "--data", str(data), "--candidate", str(candidate), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"shipped", "candidate", "command", "commit"} and report["commit"]  # names what made it
    shipped, other = ([r["confidence"] for r in report[k]["rows"]] for k in ("shipped", "candidate"))
    assert shipped != other, "the candidate's judge was not the one scored"
    assert report["shipped"]["summary"]["pairs"] == 7 and report["shipped"]["summary"]["grid_lrs2_pairs"] == 7
    assert [r["shift"] for r in report["candidate"]["rows"]] == [0, -2, 2, -5, 5, -10, 10]
