"""The lip gate's net recipe (`avcall train lip-gate-net`) on built data (its data.npz cache, made up here): it
trains through the shared loop, keeps the best held-out AUC, checkpoints, and `--resume` goes on from there."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

pytest.importorskip("torch")


def made_up_data(out) -> None:
    """What build_data caches: per example the gate's inputs per hop, labels (1 target, 0 other, -1 left out),
    a weight, its speaker and its kind; six speakers, so that two are held out."""
    from avcall.pipelines.nets.lip_gate_net import INPUTS

    rng = np.random.default_rng(0)
    d = {"x": [], "y": [], "w": [], "who": [], "kind": []}
    for k in range(12):
        n = 300 + 50 * k
        y = rng.integers(-1, 2, n).astype(np.int8)
        x = rng.normal(size=(n, INPUTS)).astype(np.float32)
        x[:, 0] += y  # something to learn
        for key, value in (("x", x), ("y", y), ("w", 1.0), ("who", f"speaker{k % 6}"), ("kind", "turns")):
            d[key].append(value)
    out.mkdir(parents=True)
    np.savez(out / "data.npz", **{k: np.array(v, dtype=object) for k, v in d.items()})


def test_trains_keeps_the_best_and_resumes(tmp_path, monkeypatch):
    from avcall.models.lip_gate import net
    from avcall.models.lip_gate.net import add_arguments

    monkeypatch.setattr(net, "CKPT_EVERY", 4)
    monkeypatch.setattr(net, "LOG_EVERY", 2)
    (tmp_path / "data" / "av_train").mkdir(parents=True)
    run = tmp_path / "run"
    made_up_data(run)
    p = argparse.ArgumentParser()
    add_arguments(p)
    common = ["--data", str(tmp_path / "data"), "--out", str(run), "--batch", "2", "--hidden", "8"]
    first = net.train(p.parse_args(common + ["--steps", "4"]))
    assert first["step"] == 4 and first["best"]["step"] == 4 and (run / "best.pt").is_file()
    again = net.train(p.parse_args(common + ["--steps", "8", "--resume"]))
    assert again["step"] == 8 and again["best"]["step"] in (4, 8)
    rows = [json.loads(line) for line in (run / "train.log").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert [("held_out_auc" in r) for r in rows] == [False, True, False, True]
