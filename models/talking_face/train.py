"""`avcall train talking-face`: the voice-to-lips net, trained on the corpus's voices and their phoneme-timed
lips. Random 3 s crops of the clean voice, heard as calls and recordings hear it (`degrade`: a room, a
corpus noise at 0-30 dB, a microphone's band, any level), the band means warmed on up to 2 s before the
crop or cold as a call starts, the lips of LOOKAHEAD hops earlier as the target; loss: mean squared error
on the shape, ten times on the opening, plus the cross-entropy of a training-only head against the visemes
the mouth is blending (the lip model's dominance weights, `--viseme-weight`). The lips are the corpus's
own without its tracker artefacts (`corpus_items`). Checkpoints and resume as the other recipes; `--export`
writes models/weights/talking_face.onnx (state as explicit inputs/outputs) with its manifest entry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import signal

from ..data.example import example_names, read_example
from avcall.pipelines.face.lip_model import LipModel, Speaker, dominance_weights
from ..data.mix import stable_seed
from ..data.noise import NOISE_KINDS, make_noise, mix_at_snr
from avcall.pipelines.face.phonemes import Timing
from ..data.rooms import random_room, reverberate
from avcall.pipelines.nets.voice_to_lips import BAND_MEAN_HOPS, HOPS_PER_VIDEO, LOOKAHEAD, OUT_DIM, voice_features
from ..training import Loop, cosine, resume, train_loop
from .features import lip_targets
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
    viseme_weight: float = 3e-4


@dataclass
class Item:
    audio: np.ndarray
    target: np.ndarray  # (hops, OUT_DIM)
    mask: np.ndarray  # (hops,)
    visemes: np.ndarray  # (hops, len(VISEMES)) the dominance weights that make those lips


def corpus_items(corpus: Path) -> list[Item]:
    """Each example's dry voice, and its speaker's lips as the corpus drew them (same phone timing, same
    speaker) but without the tracker's jitter, glitches and lost faces: the net learns what a voice says of a
    mouth, not a tracker's noise, which it cannot hear."""
    model = LipModel.load()
    items = []
    for name in example_names(corpus):
        ex = read_example(corpus / "examples", name)
        audio, meta = ex.audio["target_dry"], ex.meta
        speaker = Speaker.draw(np.random.default_rng(stable_seed(meta["seed"][0], meta["target"]["voice"])), model)
        timing = Timing.from_json(meta["timing"])
        track = model.track(timing, len(ex.lips.lips), np.random.default_rng(0), speaker, artefacts=False)
        hops = len(audio) // 160
        target, mask = lip_targets(track.lips, track.opening, track.width, track.face_present, model.mean, hops)
        visemes = dominance_weights(timing, (np.arange(hops) + 1) * 0.01, speaker.lead, speaker.tau)
        if mask.sum() > 50:
            items.append(Item(audio, target, mask, visemes.astype(np.float32)))
    return items


def degrade(audio: np.ndarray, rng: np.random.Generator, rooms: list[np.ndarray]) -> np.ndarray:
    """The clean voice as a call or a recording hears it: in a room (40%), under a corpus noise at 0-30 dB
    (60%; babble aside: its voices would have lips of their own), through a microphone's band (50%), at any
    level."""
    if rng.random() < 0.4:
        audio = reverberate(audio, rooms[int(rng.integers(len(rooms)))])
    if rng.random() < 0.6 and np.any(audio):
        kinds = [k for k in NOISE_KINDS if k != "babble"]
        kind = kinds[int(rng.integers(len(kinds)))]
        audio = audio + mix_at_snr(audio, make_noise(kind, len(audio), rng), float(rng.uniform(0, 30)))
    if rng.random() < 0.5:
        low, high = float(rng.uniform(40, 300)), float(rng.uniform(3000, 7800))
        audio = signal.sosfilt(signal.butter(2, [low, high], "bandpass", fs=16_000, output="sos"), audio)
    return (audio * 10 ** (rng.uniform(-25, 10) / 20)).astype(np.float32)


def room_bank(rng: np.random.Generator, n: int = 48) -> list[np.ndarray]:
    return [random_room(rng)[0] for _ in range(n)]


def draw(items: list[Item], cfg: TalkConfig, rng: np.random.Generator, rooms: list[np.ndarray]):
    feats, targets, masks, visemes = [], [], [], []
    n = cfg.crop_hops
    for _ in range(cfg.batch):
        it = items[int(rng.integers(len(items)))]
        hops = len(it.target)
        start = int(rng.integers(0, max(hops - n, 0) + 1))
        pre = min(start, int(rng.integers(0, BAND_MEAN_HOPS + 1)))  # 0: a call's first seconds
        audio = it.audio[(start - pre) * 160:(start + n) * 160]
        audio = np.concatenate([audio, np.zeros((pre + n) * 160 - len(audio), np.float32)])
        feats.append(voice_features(degrade(audio, rng, rooms))[pre:pre + n])
        target = np.zeros((n, OUT_DIM), np.float32)
        mask = np.zeros(n, np.float32)
        got = it.target[start:start + n]
        target[:len(got)], mask[:len(got)] = got, it.mask[start:start + n]
        blend = np.zeros((n, it.visemes.shape[1]), np.float32)
        blend[:len(got)] = it.visemes[start:start + n]
        targets.append(target)
        masks.append(mask)
        visemes.append(blend)
    return tuple(torch.from_numpy(np.stack(x)) for x in (feats, targets, masks, visemes))


def loss_fn(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The net's output at hop t is the lips of hop t - LOOKAHEAD."""
    p, t, m = pred[:, LOOKAHEAD:], target[:, :-LOOKAHEAD], mask[:, :-LOOKAHEAD, None]
    weights = torch.ones(OUT_DIM)
    weights[80] = 10.0  # the opening: what a viewer sees first
    return ((p - t) ** 2 * weights * m).sum() / (m.sum() * OUT_DIM).clamp(min=1)


def viseme_loss(logits: torch.Tensor, blend: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the viseme head (hop t: the blend of hop t - LOOKAHEAD) against the dominance weights."""
    logp = torch.log_softmax(logits[:, LOOKAHEAD:], -1)
    m = mask[:, :-LOOKAHEAD]
    return -((blend[:, :-LOOKAHEAD] * logp).sum(-1) * m).sum() / m.sum().clamp(min=1)


def predict(model: VoiceToLips, audio: np.ndarray) -> np.ndarray:
    """(video frames at 25 fps, OUT_DIM) for a whole clip, the LOOKAHEAD taken off: frame i at i / 25 s."""
    feats = torch.from_numpy(voice_features(np.concatenate([audio, np.zeros(LOOKAHEAD * 160, np.float32)])))[None]
    with torch.no_grad():
        out, _ = model(feats, model.initial_state())
    hops = out[0, LOOKAHEAD:].numpy()  # hop t: the lips at the end of hop t
    idx = np.arange(len(hops) // HOPS_PER_VIDEO) * HOPS_PER_VIDEO
    return hops[np.clip(idx - 1, 0, len(hops) - 1)]


def train(cfg: TalkConfig, progress: bool = True) -> dict:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    pool = corpus_items(cfg.corpus)
    order = rng.permutation(len(pool))
    n_val = max(2, len(pool) // 20)
    val = [pool[i] for i in order[:n_val]]
    items = [pool[i] for i in order[n_val:]]
    model = VoiceToLips(hidden=cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    config = {k: str(v) for k, v in asdict(cfg).items()}
    ckpt = cfg.out / "checkpoint.pt"
    step = resume(ckpt, lambda state: (model.load_state_dict(state["model"]), opt.load_state_dict(state["opt"])))
    if step:
        rng = np.random.default_rng([cfg.seed, step])
    rooms = room_bank(np.random.default_rng(cfg.seed + 1))
    val_cfg = TalkConfig(cfg.corpus, cfg.out, batch=min(32, 4 * len(val)))
    val_batch = draw(val, val_cfg, np.random.default_rng(99), rooms)

    def one_step(_: int) -> torch.Tensor:
        feats, target, mask, blend = draw(items, cfg, rng, rooms)
        pred, logits = model.lips_and_visemes(feats, model.initial_state(cfg.batch))
        return loss_fn(pred, target, mask) + cfg.viseme_weight * viseme_loss(logits, blend, mask)

    done = train_loop(one_step, opt, Loop(steps=cfg.steps, every=cfg.ckpt_every, checkpoint=ckpt, clip=5.0,
                                          max_minutes=cfg.max_minutes, log=cfg.out / "train.log", digits=5,
                                          progress="train talking-face" if progress else None),
                      start=step, evaluate=lambda _: {"val_opening_r": round(val_opening_r(model, val_batch), 4)},
                      state=lambda: {"model": model.state_dict(), "opt": opt.state_dict(), "config": config},
                      lr=lambda step: cosine(cfg.lr, step, cfg.steps, floor=0.1))  # the last steps settle
    final = {"val_opening_r": val_opening_r(model, val_batch), "step": done.step}
    torch.save({"model": model.state_dict(), "metrics": final, "config": config}, cfg.out / "model.pt")
    return final


def val_opening_r(model: VoiceToLips, batch) -> float:
    feats, target, mask, _ = batch
    model.eval()
    with torch.no_grad():
        pred, _ = model(feats, model.initial_state(len(feats)))
    model.train()
    p, t, m = pred[:, LOOKAHEAD:, 80], target[:, :-LOOKAHEAD, 80], mask[:, :-LOOKAHEAD] > 0
    rs = [np.corrcoef(p[i][m[i]].numpy(), t[i][m[i]].numpy())[0, 1] for i in range(len(p)) if m[i].sum() > 20]
    return float(np.nanmean(rs)) if rs else float("nan")


def export(run: Path, out_dir: Path, metrics: dict | None = None) -> dict:
    """talking_face.onnx (features, state_in -> lips, state_out), parity with torch on a whole clip and hop by hop."""
    from avcall.export.manifest import REAL_VOICE_CREDITS, corpus_info, write_manifest_entry

    state = torch.load(run / "model.pt")
    config = state["config"]
    model = VoiceToLips(hidden=int(config["hidden"]))
    model.load_state_dict(state["model"])
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / WEIGHTS
    error, stream_error = export_onnx(model, path)
    corpus = corpus_info(config["corpus"])
    credits = ["avcall voice-to-lips GRU (this repository, Apache-2.0)",
               "Training voices, lips and noise: the corpus named under `corpus` (avcall corpus make)"]
    entry = write_manifest_entry(
        path, recipe=f"avcall train talking-face --corpus {config['corpus']} --out {config['out']} --steps "
        f"{config['steps']} --batch {config['batch']} --hidden {config['hidden']} --viseme-weight "
        f"{config['viseme_weight']} --seed {config['seed']} --export",
        corpus=corpus, metrics=(metrics or {}) | dict(state["metrics"]) | {"parity_max_abs": error,
                                                                          "streaming_max_abs": stream_error},
        credits=credits + (REAL_VOICE_CREDITS if corpus.get("real_voices") else []),
        latency_ms=1000 * LOOKAHEAD * 160 / 16_000 + 25.0, manifest=out_dir / "manifest.json",
        extra={"arch": "VoiceToLips", "role": "voice -> lip features", "lookahead_ms": LOOKAHEAD * 10})
    return entry


def export_onnx(model: VoiceToLips, path: Path) -> tuple[float, float]:
    """The net as ONNX (features, state_in -> lips, state_out); raises unless it equals torch on a whole clip
    (1e-4) and hop by hop equals the whole clip (1e-5). Returns both errors."""
    from avcall.pipelines.runtime import create_session

    feats = torch.from_numpy(voice_features(np.random.default_rng(0).normal(0, 0.1, 50 * 160).astype(np.float32)))[None]
    torch.onnx.export(model, (feats, model.initial_state()), str(path), input_names=["features", "state_in"],
                      output_names=["lips", "state_out"], dynamic_axes={"features": {1: "hops"}, "lips": {1: "hops"}},
                      opset_version=17, dynamo=False)
    session = create_session(path, threads=1)
    with torch.no_grad():
        want, _ = model(feats, model.initial_state())
    whole = session.run(None, {"features": feats.numpy(), "state_in": model.initial_state().numpy()})[0]
    s = model.initial_state().numpy()
    steps = []
    for t in range(feats.shape[1]):
        y, s = session.run(None, {"features": feats[:, t:t + 1].numpy(), "state_in": s})
        steps.append(y)
    error = float(np.abs(want.numpy() - whole).max())
    stream_error = float(np.abs(np.concatenate(steps, 1) - whole).max())
    if error > 1e-4 or stream_error > 1e-5:
        raise RuntimeError(f"{path.name}: parity failed (torch {error}, streaming {stream_error})")
    return error, stream_error


def run(args) -> dict:
    from avcall.pipelines.runtime import weights_dir

    if args.corpus is None:
        raise SystemExit("avcall train talking-face: --corpus or --real is needed")

    result = train(TalkConfig(corpus=args.corpus, out=args.out, steps=args.steps, batch=args.batch, hidden=args.hidden,
                              seed=args.seed, ckpt_every=args.ckpt_every, max_minutes=args.max_minutes,
                              viseme_weight=args.viseme_weight),
                   progress=not args.quiet)
    if args.export:
        export(args.out, weights_dir())
    return result
