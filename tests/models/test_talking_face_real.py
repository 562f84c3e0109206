"""The voice-to-lips recipe on real talking faces (`avcall train talking-face --real`): validation speakers
never trained on, the best checkpoint on them kept, resumes, and the export (ONNX = torch, hop by hop = whole
clip, the opening's gain folded in) names the sources and licences the net saw."""

from __future__ import annotations

import csv
import json

import numpy as np


def fake_tracks(tmp_path):
    """Three short clips (GRID's speaker, another, a validation speaker): a voice whose loudness opens the
    mouth, as the tracker's cache holds them, and the av_train manifest rows that name them."""
    from avcall.pipelines.face.lip_model import LipModel

    from avcall.models.talking_face.real import VAL_SPEAKERS

    root, tracks = tmp_path / "av", tmp_path / "tracks"
    tracks.mkdir(parents=True)
    mean = LipModel.load().mean.astype(np.float32)
    rows = []
    for k, (speaker, dataset) in enumerate([("grid_s1", "GRID"), ("web_x", "web"), (VAL_SPEAKERS[0], "LRS3")]):
        rng = np.random.default_rng(k)
        frames = 100
        envelope = np.clip(np.convolve(rng.standard_normal(frames + 4), np.ones(5) / 5, "valid"), 0, None)
        audio = (np.repeat(envelope, 640) * rng.standard_normal(frames * 640) * 0.2).astype(np.float32)
        lips = np.repeat(mean[None], frames, 0)
        lips[:, 31:40, 1] += 0.3 * envelope[:, None]
        name = f"{dataset.lower()}__{k}"
        np.savez(tracks / f"{name}.npz", lips=lips, opening=(0.3 * envelope).astype(np.float32),
                 width=np.full(frames, 0.77, np.float32), present=np.ones(frames, bool),
                 conf=np.ones(frames, np.float32), audio=audio, speaker=speaker, dataset=dataset)
        rows.append({"clip_id": name, "speaker": speaker, "dataset": dataset, "licence": f"{dataset} terms",
                     "duration": "4.0", "file": f"clips/{name}.mkv"})
    root.mkdir()
    with (root / "MANIFEST.tsv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    return root, tracks


def test_real_recipe_trains_resumes_and_exports(tmp_path):
    from avcall.models.talking_face.real import RealConfig, export_real, load_clips, split, train_real
    from avcall.pipelines.nets.voice_to_lips import VoiceToLipsStream

    root, tracks = fake_tracks(tmp_path)
    train, val = split(load_clips(tracks))
    assert {c.speaker for c in train} == {"grid_s1", "web_x"} and len(val) == 1  # speaker-disjoint
    run = tmp_path / "run"
    cfg = dict(tracks=tracks, out=run, batch=2, hidden=16, crop_hops=60, eval_every=2)
    train_real(RealConfig(steps=2, **cfg), log=lambda _: None)
    train_real(RealConfig(steps=4, **cfg), log=lambda _: None)  # resumes at step 2
    assert [json.loads(x)["step"] for x in (run / "train.log").read_text().splitlines()] == [2, 4]
    entry = export_real(run, tmp_path / "weights", root, tracks)  # raises unless ONNX = torch, stream = clip
    assert entry["metrics"]["parity_max_abs"] <= 1e-4 and entry["lookahead_ms"] == 60
    assert 1.0 <= entry["metrics"]["opening_gain"] <= 2.0
    seen = entry["training_data"]
    assert {s["dataset"] for s in seen["train"]} == {"GRID", "web"}
    assert [s["licence"] for s in seen["validation (early stopping)"]] == ["LRS3 terms"]
    assert "research use" in entry["licence"]
    net = VoiceToLipsStream(tmp_path / "weights" / "talking_face.onnx")
    assert len(net.clip(val[0].audio, frames=101).lips) == 101


def test_calibrated_copy_scales_the_output_about_its_mean(tmp_path):
    """calibrate_onnx: out' = c + g (out - c), streaming kept (state in and out untouched)."""
    import torch

    from avcall.pipelines.runtime import create_session
    from avcall.pipelines.nets.voice_to_lips import voice_features
    from avcall.models.talking_face.model import VoiceToLips
    from avcall.models.talking_face.real import calibrate_onnx
    from avcall.models.talking_face.train import export_onnx

    _, tracks = fake_tracks(tmp_path)
    torch.manual_seed(0)
    model = VoiceToLips(hidden=16).eval()
    export_onnx(model, tmp_path / "a.onnx")
    info = calibrate_onnx(tmp_path / "a.onnx", tmp_path / "b.onnx", tracks, most=3.0)
    assert 1.0 <= info["gain"] <= 3.0 and info["clips"] == 2  # the validation speaker's clip left out
    a, b = create_session(tmp_path / "a.onnx", threads=1), create_session(tmp_path / "b.onnx", threads=1)
    feats = voice_features(np.random.default_rng(0).normal(0, 0.1, 4000).astype(np.float32))[None]
    state = np.zeros((2, 1, 16), np.float32)
    ya, sa = a.run(None, {"features": feats, "state_in": state})
    yb, sb = b.run(None, {"features": feats, "state_in": state})
    assert np.array_equal(sa, sb)
    dev = yb - ya  # = (g - 1)(ya - c): the same c for every hop
    centre = ya - dev / (info["gain"] - 1) if info["gain"] > 1 else ya
    assert np.allclose(centre, centre[:, :1], atol=1e-4)
