"""torch -> ONNX for the enhancer, the parity check against torch, and its entry in the shipped weights' manifest.

The graph takes the recurrent state as an explicit input and returns it, so the runtime steps it hop by
hop (T = 1) or runs a whole clip (any T) with the same file:

    AV model:  logpow (B, T, 161), lips (B, T, 83), state_in (layers, B, hidden) -> mask (B, T, 161), state_out
    AO model:  logpow (B, T, 161),                  state_in (layers, B, hidden) -> mask (B, T, 161), state_out

T and B are dynamic (B is 1 in the live path; a GPU server may batch streams). Any model with that
forward, `initial_state(batch)` and `use_lips` exports the same way (the AVDCNN baseline does). Opset 17, torch's legacy
(TorchScript) exporter. The file's metadata carries what the runtime needs besides the graph: framing,
sizes and the mean mouth the lip stream was centred on in training.

    python -m avcall.models.avse.export RUN/model.pt -o models/weights/avse_av.onnx --parity-audio speech.wav

The manifest writer the families share is avcall.export.manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from avcall.export.manifest import OPSET, REAL_VOICE_CREDITS, corpus_info, write_manifest_entry
from avcall.pipelines.nets.enhancer_features import HOP, LIP_DIM, N_FREQ, WINDOW, log_power, stft
from avcall.pipelines.runtime import create_session

from .model import Enhancer

LATENCY_MS = 1000 * WINDOW // 16_000  # design number: the analysis window (20 ms)
TOLERANCE = 1e-4  # ONNX Runtime vs torch, max abs error on the mask and the state
STREAM_TOLERANCE = 1e-5  # hop by hop vs whole clip, both through ONNX Runtime
CREDITS = ["avcall enhancer: causal GRU mask estimator with a lip branch (this repository, Apache-2.0)",
           "Training voices, lips and noise: the corpus named under `corpus` (avcall corpus make)"]


# --------------------------------------------------------------------------------------------- model in
def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """The model of a `model.pt` written by `avcall train avse` (the Enhancer, or the AVDCNN baseline
    when its config says arch avdcnn), and the file's contents."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
    config = ckpt.get("config", {})
    if config.get("arch", "avcall") == "avdcnn":
        from .avdcnn import AVDCNN

        model = AVDCNN()
    else:
        model = Enhancer(use_lips=str(config.get("use_lips", "True")) == "True", hidden=int(config.get("hidden", 256)))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


class _Graph(nn.Module):
    """The exported signature: lips is an input only when the model reads them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, logpow: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lips, state = rest if self.model.use_lips else (None, rest[0])
        return self.model(logpow, lips, state)


def input_names(model: nn.Module) -> list[str]:
    return ["logpow", "lips", "state_in"] if model.use_lips else ["logpow", "state_in"]


def export_onnx(model: nn.Module, path: str | Path, *, metadata: dict | None = None,
                lip_mean: np.ndarray | None = None, frames: int = 20) -> Path:
    """Write `model` as ONNX to `path`; returns the path. `lip_mean`: the (40, 2) mean mouth the lip stream
    was centred on in training (default: the shipped lip model's, as train.py uses)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    g = torch.Generator().manual_seed(0)
    example = [torch.randn(1, frames, N_FREQ, generator=g)]
    if model.use_lips:
        example.append(torch.randn(1, frames, LIP_DIM, generator=g))
    example.append(model.initial_state(1))
    dynamic = {"logpow": {0: "batch", 1: "frames"}, "lips": {0: "batch", 1: "frames"},
               "state_in": {1: "batch"}, "mask": {0: "batch", 1: "frames"}, "state_out": {1: "batch"}}
    names = input_names(model)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with torch.no_grad(), _torch_one_thread(), warnings.catch_warnings():
        # the state is an input, so the exporter's warning about GRUs and batch sizes does not apply
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # GRU size checks, constant here
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        torch.onnx.export(_Graph(model), tuple(example), str(tmp), input_names=names,
                          output_names=["mask", "state_out"],
                          dynamic_axes={k: v for k, v in dynamic.items() if k in names + ["mask", "state_out"]},
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    proto = onnx.load(str(tmp))
    onnx.checker.check_model(proto)
    if lip_mean is None and model.use_lips:
        from avcall.pipelines.face.lip_model import LipModel

        lip_mean = LipModel.load().mean
    meta = {"avcall.model": "avse", "arch": type(model).__name__, "use_lips": str(model.use_lips),
            "state_shape": json.dumps(list(model.initial_state(1).shape)), "window": str(WINDOW), "hop": str(HOP),
            "n_freq": str(N_FREQ), "lip_dim": str(LIP_DIM), "latency_ms": str(LATENCY_MS)}
    if lip_mean is not None:
        meta["lip_mean"] = json.dumps(np.round(np.asarray(lip_mean, np.float64), 6).reshape(-1).tolist())
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "avcall"
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------- parity
def speech_like(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """A voiced, syllabic test signal (a gliding harmonic source, 4 Hz syllables, a little noise) for when no
    recording is at hand."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16_000)
    t = np.arange(n) / 16_000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16_000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    return (0.1 * voiced * envelope + 0.003 * rng.standard_normal(n)).astype(np.float32)


def lip_like(frames: int, seed: int = 0) -> np.ndarray:
    """(frames, LIP_DIM): a mouth that opens and closes, lost for a stretch in the middle."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None] / 100
    lips = 0.3 * np.sin(2 * np.pi * (4 * t + rng.random((1, LIP_DIM)))) * rng.random((1, LIP_DIM))
    lips[:, 82] = 1.0
    lips[frames // 3: frames // 2] = 0.0
    return lips.astype(np.float32)


@contextmanager
def _torch_one_thread():
    """torch on one thread for a while: a small GRU gains nothing from more, and loses much to spinning
    threads on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _feeds(model: nn.Module, logpow: np.ndarray, lips: np.ndarray | None, state: np.ndarray) -> dict:
    feeds = {"logpow": logpow, "state_in": state}
    if model.use_lips:
        feeds["lips"] = lips
    return feeds


def _torch_run(model: nn.Module, logpow: np.ndarray, lips: np.ndarray | None, state: np.ndarray):
    with torch.no_grad():
        mask, out = model(torch.from_numpy(logpow), torch.from_numpy(lips) if model.use_lips else None,
                          torch.from_numpy(state))
    return mask.numpy(), out.numpy()


def _max_abs(a: tuple, b: tuple) -> float:
    return float(max(np.abs(x - y).max() for x, y in zip(a, b)))


def parity(model: nn.Module, onnx_path: str | Path, *, audio: np.ndarray | None = None, frames: int = 300,
           seed: int = 0) -> dict:
    """Max abs errors (mask and state together) of ONNX Runtime (CPU) against torch on random inputs and on a
    real-ish input (log power of `audio`, default a speech-like signal, with a lip-like stream), and of the
    ONNX model stepped hop by hop (T = 1, state carried) against the same model over the whole clip."""
    with _torch_one_thread():
        return _parity(model.eval(), create_session(onnx_path, prefer_gpu=False), audio, frames, seed)


def _parity(model: nn.Module, session, audio: np.ndarray | None, frames: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    shape = tuple(model.initial_state(1).shape)

    logpow = (rng.standard_normal((1, frames, N_FREQ)) * 4 - 8).astype(np.float32)
    lips = rng.standard_normal((1, frames, LIP_DIM)).astype(np.float32)
    state = (0.5 * rng.standard_normal(shape)).astype(np.float32)
    random_err = _max_abs(_torch_run(model, logpow, lips, state),
                          session.run(None, _feeds(model, logpow, lips, state)))

    audio = speech_like(seed=seed) if audio is None else np.asarray(audio, np.float32)
    real_logpow = log_power(stft(audio))[None]
    real_lips = lip_like(real_logpow.shape[1], seed)[None]
    zero = np.zeros(shape, np.float32)
    whole = session.run(None, _feeds(model, real_logpow, real_lips, zero))
    real_err = _max_abs(_torch_run(model, real_logpow, real_lips, zero), whole)

    masks, state = [], zero
    for t in range(real_logpow.shape[1]):
        mask, state = session.run(None, _feeds(model, real_logpow[:, t:t + 1], real_lips[:, t:t + 1], state))
        masks.append(mask)
    stream_err = _max_abs((np.concatenate(masks, axis=1), state), whole)
    return {"random_max_abs": random_err, "real_max_abs": real_err, "streaming_max_abs": stream_err,
            "frames_random": frames, "frames_real": int(real_logpow.shape[1]),
            "ok": random_err <= TOLERANCE and real_err <= TOLERANCE and stream_err <= STREAM_TOLERANCE}


# --------------------------------------------------------------------------------------------- manifest
def default_recipe(config: dict) -> str:
    """The training run as an `avcall train avse` command line, rebuilt from the checkpoint's config
    (its values are strings; flags the config does not hold are left out)."""
    args = []
    for key in ("corpus", "pool", "out", "arch", "steps", "batch", "lr", "hidden", "seed"):
        if config.get(key) not in (None, "None", ""):
            args.append(f"--{key} {config[key]}")
    if config.get("use_lips") == "False":
        args.append("--audio-only")
    return " ".join(["avcall train avse", *args])


# --------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m avcall.models.avse.export",
                                description="Export an enhancer checkpoint (model.pt of `avcall train avse`) "
                                "to ONNX, check it against torch, and record it in a manifest.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="ONNX file to write (e.g. models/weights/avse_av.onnx)")
    p.add_argument("--manifest", type=Path, help="manifest to update (default: manifest.json beside --out)")
    p.add_argument("--no-manifest", action="store_true")
    p.add_argument("--recipe", help="training command line (default: rebuilt from the checkpoint's config)")
    p.add_argument("--corpus", type=Path, help="the training corpus folder (default: the checkpoint's)")
    p.add_argument("--parity-audio", type=Path, help="speech file for the real-input parity check")
    args = p.parse_args(argv)

    model, ckpt = load_checkpoint(args.checkpoint)
    config = ckpt.get("config", {})
    export_onnx(model, args.out)
    audio = None
    if args.parity_audio is not None:
        import soundfile as sf
        from scipy.signal import resample_poly

        audio, rate = sf.read(str(args.parity_audio), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if rate != 16_000:
            audio = resample_poly(audio, 16_000, rate).astype(np.float32)
    check = parity(model, args.out, audio=audio)
    print(json.dumps({"out": str(args.out), "bytes": args.out.stat().st_size, "parity": check}, indent=1))
    if not check["ok"]:
        print(f"parity check failed (tolerance {TOLERANCE}, streaming {STREAM_TOLERANCE})", file=sys.stderr)
        return 1
    if not args.no_manifest:
        corpus = args.corpus or (Path(config["corpus"]) if config.get("corpus") else None)
        info = corpus_info(corpus)
        write_manifest_entry(args.out, recipe=args.recipe or default_recipe(config), corpus=info,
                             metrics=dict(ckpt.get("metrics") or {}),
                             credits=CREDITS + (REAL_VOICE_CREDITS if info.get("real_voices") else []),
                             latency_ms=LATENCY_MS,
                             manifest=args.manifest or args.out.with_name("manifest.json"),
                             extra={"arch": type(model).__name__, "use_lips": model.use_lips,
                                    "state_shape": list(model.initial_state(1).shape), "parity": check,
                                    "train_config": config})
    return 0


if __name__ == "__main__":
    sys.exit(main())
