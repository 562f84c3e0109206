"""The target-talker separator (models/tse): streaming equals the whole clip, the ONNX step equals torch, and the
GPU recipe's batches (mixed on the device from the packed voices) train a few steps on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avcall.models.tse.model import HOP, Separator, pit_si_sdr  # noqa: E402
from avcall.models.tse.train import export_onnx, run  # noqa: E402
from avcall.models.tse.train_args import add_arguments  # noqa: E402


def parser():
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p


@pytest.mark.parametrize("cond_dim", [0, 64])
def test_streaming_equals_whole_clip_and_onnx_equals_torch(tmp_path, cond_dim):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = Separator(cond_dim=cond_dim).eval()
    x = torch.randn(1, 40 * HOP) * 0.1
    cond = torch.randn(1, x.shape[1] // 80, 64) if cond_dim else None
    with torch.no_grad():
        whole, _ = model(x, cond=cond)
        state, parts = model.initial_state(1), []
        for i in range(0, x.shape[1], HOP):
            c = cond[:, i // 80:(i + HOP) // 80] if cond_dim else None
            y, state = model(x[:, i:i + HOP], state, c)
            parts.append(y)
    assert torch.allclose(torch.cat(parts, 2), whole, atol=1e-5)
    assert torch.allclose(whole.sum(1), x, atol=1e-5)  # mixture consistency
    path = tmp_path / "sep.onnx"
    export_onnx(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state, parts = np.zeros((1, model.h, model.state_size), np.float32), []
    for i in range(0, x.shape[1], HOP):
        feeds = {"mix": x[:, i:i + HOP].numpy(), "state": state}
        if cond_dim:
            feeds["lips"] = cond[:, i // 80:(i + HOP) // 80].numpy()
        y, state = sess.run(None, feeds)
        parts.append(y)
    np.testing.assert_allclose(np.concatenate(parts, 2), whole.numpy(), atol=1e-4)


def test_pit_picks_the_better_pairing():
    refs = torch.randn(2, 2, 1600)
    value, swapped = pit_si_sdr(refs, refs.flip(1))
    assert bool(swapped.all()) and float(value.min()) > 50


def test_recipe_trains_and_resumes_on_cpu(tmp_path):
    rng = np.random.default_rng(0)
    n, lengths = 12, rng.integers(20000, 40000, 12)
    audio = (rng.standard_normal(int(lengths.sum())) * 3000).astype(np.int16)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    voices = tmp_path / "voices.npz"
    np.savez(voices, audio=audio, starts=starts, lengths=lengths, speaker=np.arange(n, dtype=np.int32),
             speakers=np.array([f"s{i}" for i in range(n)]), val=np.arange(n) >= 9,
             emb=rng.standard_normal((int(-(-lengths // 640).sum()), 64)).astype(np.float16),
             emb_start=np.concatenate([[0], np.cumsum(-(-lengths // 640))[:-1]]), has=np.ones(n, bool))
    for design in ("separate", "lips"):
        out = tmp_path / design
        args = ["--voices", str(voices), "--out", str(out), "--design", design, "--steps", "2", "--batch", "2",
                "--seconds", "0.5", "--eval-every", "1", "--ckpt-every", "1", "--val-batch", "2", "--export"]
        if design == "lips":
            args += ["--lips", str(voices)]
        run(parser().parse_args(args))
        run(parser().parse_args([*args[:-9], "--steps", "3", "--batch", "2", "--seconds", "0.5", "--eval-every",
                                 "1", "--ckpt-every", "1", "--val-batch", "2"] + (["--lips", str(voices)] if design == "lips" else [])))
        log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
        assert [r["step"] for r in log if "step" in r] == [1, 2, 3]
        assert (out / ("tse_lips.onnx" if design == "lips" else "tse_sep.onnx")).is_file()
