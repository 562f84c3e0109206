"""torch -> ONNX export of the enhancer, its parity with torch, the manifest, and the session factory."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from avcall.pipelines import runtime
from avcall.export.manifest import write_manifest_entry
from avcall.models.avse.export import (CREDITS, LATENCY_MS, STREAM_TOLERANCE, TOLERANCE, export_onnx, load_checkpoint,
                                       main, parity)
from avcall.models.avse.model import Enhancer
from avcall.pipelines.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def random_model(use_lips: bool, seed: int = 0, hidden: int = 256) -> Enhancer:
    torch.manual_seed(seed)
    return Enhancer(use_lips=use_lips, hidden=hidden).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[bool, tuple[Enhancer, Path]]:
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for use_lips in (True, False):
        model = random_model(use_lips)
        out[use_lips] = model, export_onnx(model, folder / f"avse_{'av' if use_lips else 'ao'}.onnx")
    return out


def speech(shared_data: Path, seconds: float = 4.0) -> np.ndarray:
    audio, rate = sf.read(str(shared_data / "speech" / "DeepSpeech_arctic_a0024.wav"), dtype="float32",
                          always_2d=True)
    audio = resample_poly(audio.mean(axis=1), 16_000, rate) if rate != 16_000 else audio.mean(axis=1)
    return audio[: int(seconds * 16_000)].astype(np.float32)


@pytest.mark.parametrize("use_lips", [True, False], ids=["av", "ao"])
def test_onnx_matches_torch_and_streams_like_the_whole_clip(exported, use_lips):
    model, path = exported[use_lips]
    check = parity(model, path)  # random inputs, and a speech-like signal with a lip-like stream
    assert check["random_max_abs"] <= TOLERANCE
    assert check["real_max_abs"] <= TOLERANCE
    assert check["streaming_max_abs"] <= STREAM_TOLERANCE
    assert check["ok"]


@pytest.mark.parametrize("use_lips", [True, False], ids=["av", "ao"])
def test_parity_on_real_speech(exported, shared_data, use_lips):
    model, path = exported[use_lips]
    check = parity(model, path, audio=speech(shared_data))
    assert check["frames_real"] > 100
    assert check["real_max_abs"] <= TOLERANCE and check["streaming_max_abs"] <= STREAM_TOLERANCE


def test_graph_signature_state_and_metadata(exported):
    for use_lips, (_model, path) in exported.items():
        proto = onnx.load(str(path))
        assert proto.opset_import[0].version == 17
        inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
        expected = {"logpow": ["batch", "frames", 161], "state_in": [2, "batch", 256]}
        if use_lips:
            expected["lips"] = ["batch", "frames", 83]
        assert inputs == expected
        assert [o.name for o in proto.graph.output] == ["mask", "state_out"]
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["use_lips"] == str(use_lips) and meta["latency_ms"] == "20"
        assert ("lip_mean" in meta) == use_lips
        session = runtime.create_session(path, prefer_gpu=False)
        feeds = {"logpow": np.zeros((2, 3, 161), np.float32), "state_in": np.zeros((2, 2, 256), np.float32)}
        if use_lips:
            feeds["lips"] = np.zeros((2, 3, 83), np.float32)
        mask, state = session.run(None, feeds)  # a batch of streams (a GPU server batches them)
        assert mask.shape == (2, 3, 161) and state.shape == (2, 2, 256)
        assert 0.0 <= mask.min() and mask.max() <= 1.2


def test_shipped_size_fits_the_budget(exported):
    total = sum(path.stat().st_size for _, path in exported.values())
    assert total <= 10_000_000, f"AV + AO weigh {total} bytes"


def test_manifest_entry_is_added_then_replaced(exported, tmp_path):
    manifest = tmp_path / "weights" / "manifest.json"
    _, av = exported[True]
    _, ao = exported[False]
    corpus = {"path": "corpus/", "seed": 0, "examples": 10, "seconds": 60.0}
    common = {"corpus": corpus, "credits": CREDITS, "latency_ms": LATENCY_MS, "manifest": manifest}
    write_manifest_entry(av, recipe="avcall train avse --corpus corpus/", metrics={"val_si_sdr": 1.0}, **common)
    write_manifest_entry(ao, recipe="r", metrics={}, **common)
    entry = write_manifest_entry(av, recipe="again", metrics={"val_si_sdr": 2.0}, **common)
    data = json.loads(manifest.read_text())
    assert sorted(data["models"]) == ["avse_ao.onnx", "avse_av.onnx"]
    got = data["models"]["avse_av.onnx"]
    assert got == entry
    assert got["sha256"] == hashlib.sha256(av.read_bytes()).hexdigest()
    assert got["bytes"] == av.stat().st_size and got["latency_ms"] == 20
    assert got["recipe"] == "again" and got["metrics"] == {"val_si_sdr": 2.0} and got["corpus"]["seed"] == 0
    assert got["credits"]
    assert data["total_bytes"] == av.stat().st_size + ao.stat().st_size
    assert [p.name for p in manifest.parent.iterdir()] == ["manifest.json"]  # no temp file left


def test_checkpoint_exports_through_the_command_line(tmp_path):
    model = random_model(use_lips=False, seed=3, hidden=64)
    ckpt = tmp_path / "run" / "model.pt"
    ckpt.parent.mkdir()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "corpus.json").write_text(json.dumps({"seed": 7, "examples": 12, "seconds": 90.5, "version": 1}))
    config = {"corpus": str(corpus), "out": str(ckpt.parent), "use_lips": "False", "hidden": "64", "seed": "0"}
    torch.save({"model": model.state_dict(), "config": config, "metrics": {"val_si_sdr": 3.5}}, ckpt)
    loaded, _ = load_checkpoint(ckpt)
    assert not loaded.use_lips and loaded.hidden == 64
    out = tmp_path / "weights" / "avse_ao.onnx"
    assert main([str(ckpt), "-o", str(out)]) == 0
    entry = json.loads((out.parent / "manifest.json").read_text())["models"]["avse_ao.onnx"]
    assert entry["corpus"]["seed"] == 7 and entry["corpus"]["seconds"] == 90.5
    assert entry["metrics"] == {"val_si_sdr": 3.5} and entry["parity"]["ok"]
    assert entry["recipe"].endswith("--hidden 64 --seed 0 --audio-only") and entry["state_shape"] == [2, 1, 64] and not entry["use_lips"]


def test_providers_prefer_tensorrt_then_cuda_then_cpu(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "TRT_CACHE", tmp_path / "trt")
    monkeypatch.setattr(runtime.ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    names = [p[0] if isinstance(p, tuple) else p for p in runtime.providers(prefer_gpu=True)]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert runtime.providers(prefer_gpu=False) == ["CPUExecutionProvider"]
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert runtime.providers(prefer_gpu=True) == ["CPUExecutionProvider"]


def test_session_settings_suit_live_use(exported):
    opts = runtime.session_options(threads=1)
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    assert opts.execution_mode == runtime.ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.graph_optimization_level == runtime.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = runtime.create_session(exported[False][1])
    assert session.get_providers()[-1] == "CPUExecutionProvider"


def test_missing_model_file_is_a_one_line_error(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="is missing"):
        runtime.create_session(tmp_path / "nothing.onnx")
    monkeypatch.delenv("AVCALL_WEIGHTS_DIR", raising=False)
    assert runtime.weights_path("avse_av.onnx") == REPO / "models" / "weights" / "avse_av.onnx"
    monkeypatch.setenv("AVCALL_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(InputError, match=r"avse_av\.onnx is missing"):
        runtime.require_weights("avse_av.onnx")


def test_only_export_runtime_creates_sessions():
    pattern = re.compile(r"InferenceSession\s*\(")
    offenders = [str(p.relative_to(REPO)) for folder in ("app", "pipelines", "models", "export")
                 for p in (REPO / folder).rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == ["pipelines/runtime.py"]
