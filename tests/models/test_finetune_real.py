"""Fine-tuning the shipped nets on real talking faces (issue 23): the shipped ONNX weights read back into torch
exactly (the voice-to-lips GRU's gates reordered, the calibration nodes left out; the sync judge's encoders),
and both recipes run a few steps on tracker caches, keep the best checkpoint on the validation speakers and
export with parity."""

from __future__ import annotations

import json

import numpy as np
import torch

from tests.models.test_talking_face_real import fake_tracks


def test_voice_to_lips_read_back_from_a_calibrated_onnx(tmp_path):
    from avcall.models.talking_face.finetune import load_shipped
    from avcall.models.talking_face.model import VoiceToLips
    from avcall.models.talking_face.real import calibrate_onnx
    from avcall.models.talking_face.train import export_onnx

    _, tracks = fake_tracks(tmp_path)
    torch.manual_seed(0)
    model = VoiceToLips(hidden=16).eval()
    export_onnx(model, tmp_path / "a.onnx")
    calibrate_onnx(tmp_path / "a.onnx", tmp_path / "b.onnx", tracks, most=3.0)
    back = load_shipped(tmp_path / "b.onnx").eval()
    want, got = model.state_dict(), back.state_dict()
    for k in want:
        if not k.startswith("visemes."):
            assert torch.allclose(want[k], got[k]), k


def test_voice_to_lips_finetune_keeps_the_best_and_exports(tmp_path):
    from avcall.pipelines.runtime import create_session
    from avcall.models.talking_face.finetune import FinetuneConfig, export, finetune
    from avcall.models.talking_face.model import VoiceToLips
    from avcall.models.talking_face.train import export_onnx

    _, tracks = fake_tracks(tmp_path)
    torch.manual_seed(0)
    export_onnx(VoiceToLips(hidden=16).eval(), tmp_path / "shipped.onnx")
    run = tmp_path / "run"
    result = finetune(FinetuneConfig(tracks=tracks, out=run, steps=2, batch=2, crop_hops=60, eval_every=1),
                      tmp_path / "shipped.onnx", log=lambda _: None)
    steps = [json.loads(x)["step"] for x in (run / "train.log").read_text().splitlines()]
    assert steps == [0, 1, 2] and result["step"] == 2
    info = export(run, tmp_path / "out", tracks, alpha=0.5, shipped=tmp_path / "shipped.onnx")
    assert info["parity_max_abs"] <= 1e-4 and info["streaming_max_abs"] <= 1e-5 and info["alpha"] == 0.5
    session = create_session(tmp_path / "out" / "talking_face.onnx", threads=1)
    assert [i.name for i in session.get_inputs()] == ["features", "state_in"]


def test_sync_judge_read_back_and_finetuned(tmp_path, monkeypatch):
    from avcall.pipelines.runtime import create_session, require_weights
    from avcall.models.sync import finetune as ft
    from avcall.pipelines.nets.sync_features import AUDIO_PER_VIDEO, LIP_DIM, N_MELS, WINDOW

    lips_onnx, audio_onnx = require_weights("sync_lips.onnx"), require_weights("sync_audio.onnx")
    lip_enc, audio_enc = ft.load_shipped(lips_onnx, audio_onnx)
    x = np.random.default_rng(0).normal(size=(4, LIP_DIM, WINDOW)).astype(np.float32)
    m = np.random.default_rng(1).normal(size=(4, N_MELS, WINDOW * AUDIO_PER_VIDEO)).astype(np.float32)
    with torch.no_grad():
        assert np.allclose(lip_enc.eval()(torch.from_numpy(x)).numpy(),
                           create_session(lips_onnx, threads=1).run(None, {"lips": x})[0], atol=1e-5)
        assert np.allclose(audio_enc.eval()(torch.from_numpy(m)).numpy(),
                           create_session(audio_onnx, threads=1).run(None, {"mel": m})[0], atol=1e-5)

    _, tracks = fake_tracks(tmp_path)
    run = tmp_path / "run"
    metrics = ft.finetune(ft.FinetuneConfig(tracks=tracks, out=run, steps=2, batch=8, eval_every=1, noisy_versions=1,
                                            own_offsets=False),
                          lips_onnx, audio_onnx, log=lambda _: None)
    assert metrics["best"] and "segment_within_1" in metrics["val_real"]
    info = ft.export(run, tmp_path / "out")  # raises unless onnxruntime equals torch
    assert info["parity_max_abs"] <= 1e-4


def test_the_finetunes_are_avcall_train_commands(tmp_path, capsys):
    """`avcall train talking-face-finetune` runs the fine-tune from the shipped net and exports; `avcall train
    sync-finetune` takes the same real-data options."""
    from avcall.app.cli import build_parser, cmd_train

    _, tracks = fake_tracks(tmp_path)
    run = tmp_path / "run"
    args = build_parser().parse_args(["train", "talking-face-finetune", "--tracks", str(tracks), "--out", str(run),
                                      "--steps", "2", "--batch", "2", "--eval-every", "1", "--export",
                                      str(tmp_path / "out")])
    assert cmd_train(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["finetune"]["step"] == 2 and result["export"]["parity_max_abs"] <= 1e-4
    assert [json.loads(x)["step"] for x in (run / "train.log").read_text().splitlines()] == [0, 1, 2]
    sync = build_parser().parse_args(["train", "sync-finetune", "--tracks", str(tracks), "--out", str(run)])
    assert (sync.steps, sync.lr, sync.real_share, sync.grid_share, sync.eval_every) == (1500, 1e-4, 0.5, 0.3, 100)
