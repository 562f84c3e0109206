"""`avcall train talking-face`: the voice-to-lips net, trained on the corpus's voices and their phoneme-timed
lips. Random 3 s crops of the clean voice (half of them with a corpus noise at 5-30 dB and any level, as an
enhanced call voice sounds), the lips of LOOKAHEAD hops earlier as the target; loss: mean squared error on
the shape, ten times on the opening. Checkpoints and resume as the other recipes; `--export` writes
models/weights/talking_face.onnx (state as explicit inputs/outputs) with its manifest entry.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..avse.pool import pool_from_corpus
from ..data.lipmodel import LipModel
from ..data.noise import NOISE_KINDS, make_noise, mix_at_snr
from .features import HOPS_PER_VIDEO, LOOKAHEAD, OUT_DIM, lip_targets, log_mel_frames
from .model import VoiceToLips

WEIGHTS = "talking_face.onnx"


@dataclass
class TalkConfig:
    corpus: Path
    out: Path
    steps: int = 3000
    batch: int = 32
    lr: float = 1e-3
    hidden: int = 128
    crop_hops: int = 300
    ckpt_every: int = 250
    seed: int = 0
    max_minutes: float = 0.0


@dataclass
class Item:
    audio: np.ndarray
    target: np.ndarray  # (hops, OUT_DIM)
    mask: np.ndarray  # (hops,)


def prepare(pool) -> list[Item]:
    mean = LipModel.load().mean
    items = []
    for u in pool:
        hops = len(u.audio) // 160
        target, mask = lip_targets(u.lips.astype(np.float32), u.opening, u.width, u.present, mean, hops)
        if mask.sum() > 50:
            items.append(Item(u.audio, target, mask))
    return items


def draw(items: list[Item], cfg: TalkConfig, rng: np.random.Generator):
    mels, targets, masks = [], [], []
    n = cfg.crop_hops
    for _ in range(cfg.batch):
        it = items[int(rng.integers(len(items)))]
        hops = len(it.target)
        start = int(rng.integers(0, max(hops - n, 0) + 1))
        audio = it.audio[start * 160:(start + n) * 160]
        audio = np.concatenate([audio, np.zeros(n * 160 - len(audio), np.float32)])
        if rng.random() < 0.5 and np.any(audio):
            kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
            if kind != "babble":
                audio = audio + mix_at_snr(audio, make_noise(kind, len(audio), rng), float(rng.uniform(5, 30)))
        audio = audio * 10 ** (rng.uniform(-20, 10) / 20)
        target = np.zeros((n, OUT_DIM), np.float32)
        mask = np.zeros(n, np.float32)
        got = it.target[start:start + n]
        target[:len(got)], mask[:len(got)] = got, it.mask[start:start + n]
        mels.append(log_mel_frames(audio))
        targets.append(target)
        masks.append(mask)
    return (torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(targets)), torch.from_numpy(np.stack(masks)))


def loss_fn(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The net's output at hop t is the lips of hop t - LOOKAHEAD."""
    p, t, m = pred[:, LOOKAHEAD:], target[:, :-LOOKAHEAD], mask[:, :-LOOKAHEAD, None]
    weights = torch.ones(OUT_DIM)
    weights[80] = 10.0  # the opening: what a viewer sees first
    return ((p - t) ** 2 * weights * m).sum() / (m.sum() * OUT_DIM).clamp(min=1)


def predict(model: VoiceToLips, audio: np.ndarray) -> np.ndarray:
    """(video frames at 25 fps, OUT_DIM) for a whole clip, the LOOKAHEAD taken off: frame i at i / 25 s."""
    mel = torch.from_numpy(log_mel_frames(np.concatenate([audio, np.zeros(LOOKAHEAD * 160, np.float32)])))[None]
    with torch.no_grad():
        out, _ = model(mel, model.initial_state())
    hops = out[0, LOOKAHEAD:].numpy()  # hop t: the lips at the end of hop t
    idx = np.arange(len(hops) // HOPS_PER_VIDEO) * HOPS_PER_VIDEO
    return hops[np.clip(idx - 1, 0, len(hops) - 1)]


def train(cfg: TalkConfig, progress: bool = True) -> dict:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    pool = pool_from_corpus(cfg.corpus)
    order = rng.permutation(len(pool))
    n_val = max(2, len(pool) // 20)
    val = prepare([pool[i] for i in order[:n_val]])
    items = prepare([pool[i] for i in order[n_val:]])
    model = VoiceToLips(hidden=cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ckpt, log = cfg.out / "checkpoint.pt", cfg.out / "train.log"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        rng = np.random.default_rng([cfg.seed, step])
    val_batch = draw(val, TalkConfig(cfg.corpus, cfg.out, batch=min(32, 4 * len(val))), np.random.default_rng(99))
    bar = tqdm(total=cfg.steps, initial=step, desc="train talking-face", disable=not progress)
    started = time.time()
    while step < cfg.steps and not (cfg.max_minutes and time.time() - started > 60 * cfg.max_minutes):
        mel, target, mask = draw(items, cfg, rng)
        pred, _ = model(mel, model.initial_state(cfg.batch))
        loss = loss_fn(pred, target, mask)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            metrics = {"step": step, "loss": round(loss.item(), 5), "val_opening_r": round(val_opening_r(model, val_batch), 4),
                       "seconds": round(time.time() - started, 1)}
            with log.open("a") as f:
                f.write(json.dumps(metrics) + "\n")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "config": {k: str(v) for k, v in asdict(cfg).items()}}, ckpt)
    bar.close()
    final = {"val_opening_r": val_opening_r(model, val_batch), "step": step}
    torch.save({"model": model.state_dict(), "metrics": final, "config": {k: str(v) for k, v in asdict(cfg).items()}},
               cfg.out / "model.pt")
    return final


def val_opening_r(model: VoiceToLips, batch) -> float:
    mel, target, mask = batch
    model.eval()
    with torch.no_grad():
        pred, _ = model(mel, model.initial_state(len(mel)))
    model.train()
    p, t, m = pred[:, LOOKAHEAD:, 80], target[:, :-LOOKAHEAD, 80], mask[:, :-LOOKAHEAD] > 0
    rs = [np.corrcoef(p[i][m[i]].numpy(), t[i][m[i]].numpy())[0, 1] for i in range(len(p)) if m[i].sum() > 20]
    return float(np.nanmean(rs)) if rs else float("nan")


def export(run: Path, out_dir: Path, metrics: dict | None = None) -> dict:
    """talking_face.onnx (mel, state_in -> lips, state_out), parity with torch on a whole clip and hop by hop."""
    from ...export.onnx_export import REAL_VOICE_CREDITS, corpus_info, write_manifest_entry
    from ...export.runtime import create_session

    state = torch.load(run / "model.pt")
    config = state["config"]
    model = VoiceToLips(hidden=int(config["hidden"]))
    model.load_state_dict(state["model"])
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / WEIGHTS
    mel = torch.randn(1, 50, 40) * 3 - 5
    torch.onnx.export(model, (mel, model.initial_state()), str(path), input_names=["mel", "state_in"],
                      output_names=["lips", "state_out"], dynamic_axes={"mel": {1: "hops"}, "lips": {1: "hops"}},
                      opset_version=17, dynamo=False)
    session = create_session(path, threads=1)
    with torch.no_grad():
        want, _ = model(mel, model.initial_state())
    whole = session.run(None, {"mel": mel.numpy(), "state_in": model.initial_state().numpy()})[0]
    s = model.initial_state().numpy()
    steps = []
    for t in range(mel.shape[1]):
        y, s = session.run(None, {"mel": mel[:, t:t + 1].numpy(), "state_in": s})
        steps.append(y)
    error = float(np.abs(want.numpy() - whole).max())
    stream_error = float(np.abs(np.concatenate(steps, 1) - whole).max())
    if error > 1e-4 or stream_error > 1e-5:
        raise RuntimeError(f"{WEIGHTS}: parity failed (torch {error}, streaming {stream_error})")
    corpus = corpus_info(config["corpus"])
    credits = ["avcall voice-to-lips GRU (this repository, Apache-2.0)",
               "Training voices, lips and noise: the corpus named under `corpus` (avcall corpus make)"]
    entry = write_manifest_entry(
        path, recipe=f"avcall train talking-face --corpus {config['corpus']} --out {config['out']} --steps "
        f"{config['steps']} --batch {config['batch']} --hidden {config['hidden']} --seed {config['seed']} --export",
        corpus=corpus, metrics=(metrics or {}) | dict(state["metrics"]) | {"parity_max_abs": error,
                                                                          "streaming_max_abs": stream_error},
        credits=credits + (REAL_VOICE_CREDITS if corpus.get("real_voices") else []),
        latency_ms=1000 * LOOKAHEAD * 160 / 16_000 + 25.0, manifest=out_dir / "manifest.json",
        extra={"arch": "VoiceToLips", "role": "voice -> lip features", "lookahead_ms": LOOKAHEAD * 10})
    return entry


def run(args) -> dict:
    from ...export.runtime import weights_dir

    result = train(TalkConfig(corpus=args.corpus, out=args.out, steps=args.steps, batch=args.batch, hidden=args.hidden,
                              seed=args.seed, ckpt_every=args.ckpt_every, max_minutes=args.max_minutes),
                   progress=not args.quiet)
    if args.export:
        export(args.out, weights_dir())
    return result
