"""`avcall eval talking-face` on two real clips: every method scored, the avatars also as rendered and
re-tracked, the codec's rate, and a side-by-side video with the voice beside the report."""

from __future__ import annotations

import json

import av
import pytest

CLIPS = ("GRID_bbaf2n.mpg", "LRS2_deepavsr_00004.mp4", "LRS2_deepavsr_00004.txt")


def test_two_real_clips(shared_data, tmp_path):
    from avcall.app.eval.talking_face import METHODS, evaluate_talking_face
    from avcall.pipelines.runtime import weights_path
    from tests.app.scaled_onnx import scaled_weights

    if not all(weights_path(w).is_file() for w in ("talking_face.onnx", "sync_lips.onnx", "sync_audio.onnx")):
        pytest.skip("the voice-to-lips net or the sync judge is not shipped in models/weights/")
    data = tmp_path / "data"
    (data / "talking_faces").mkdir(parents=True)
    for name in CLIPS:
        (data / "talking_faces" / name).symlink_to(shared_data / "talking_faces" / name)
    for name in ("speech", "noise", "MANIFEST.tsv"):
        (data / name).symlink_to(shared_data / name)
    out = tmp_path / "out" / "report.json"
    candidate = scaled_weights(weights_path("talking_face.onnx"), tmp_path / "candidate.onnx", 0.7)  # another net
    report = evaluate_talking_face(data, out, progress=False, side_by_side_clips=1, candidate=candidate)
    s = report["summary"]
    assert list(s) == list(METHODS) and s["phoneme-oracle"]["n"] == 2
    keys = ("mouth_open_r", "lip_feature_r", "sync_confidence")
    assert [s["avcall-voice-candidate"][k] for k in keys] != [s["avcall-voice"][k] for k in keys], \
        "the candidate net was not the one scored"
    scored = [s["avcall-voice-candidate"][k] for k in keys]
    assert all(isinstance(v, float) and v == v for v in scored), "the candidate is scored like the shipped net"
    assert set(report["by_source"]["avcall-voice"]) == {"GRID", "LRS2"}
    assert report["by_source"]["avcall-voice"]["GRID"]["n"] == 1
    assert s["avcall-reenact"]["mouth_open_r"] > 0.9 and s["avcall-reenact"]["codec_kbps"] < 8
    assert s["avcall-reenact"]["rendered"]["mouth_open_r"] > 0.6  # the portrait's own mouth follows the face
    assert "rendered" in s["avcall-voice"] and "rendered" not in s["static"]
    assert s["static"]["mouth_open_r"] == 0 and s["static"]["in_sync_share"] == 0
    assert json.loads(out.read_text())["summary"] == json.loads(json.dumps(s))
    [video] = (out.parent / "report_side_by_side").iterdir()
    with av.open(str(video)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (4 * 256, 256)  # real | voice | reenact | candidate
        assert [s.type for s in c.streams] == ["video", "audio"]


def test_synced_comparison_takes_the_clip_own_offset():
    """An avatar that follows the voice of a clip whose picture is k frames ahead of its voice is k frames
    late on the picture: `mouth_open_r_synced` compares it at that offset."""
    import numpy as np

    from avcall.app.eval.talking_face import compare, static_track

    rng = np.random.default_rng(0)
    real = static_track(120)
    real.opening[:] = np.convolve(rng.standard_normal(124), np.ones(5) / 5, "valid")
    late = static_track(120)
    late.opening[3:] = real.opening[:-3]  # the avatar, 3 frames behind the picture
    assert compare(real, late, 3)["mouth_open_r"] > 0.999
    assert compare(real, late)["mouth_open_r"] < 0.5
