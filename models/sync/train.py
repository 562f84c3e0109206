"""`avcall train sync`: the audio-lip sync judge, trained contrastively on the corpus's voices and lips.

Per step, B windows of 0.2 s from random corpus utterances with a face: the lip window pulls its own voice
window close and pushes away the other utterances' windows and the same voice shifted by 3-15 video frames
(the hard negatives that teach timing). The voice is the clean target half of the time, and the target
with a corpus noise at 0-20 dB otherwise. Loss: InfoNCE both ways (temperature 0.1). Checkpoints every
`ckpt_every` steps in OUT/checkpoint.pt; run again with the same OUT to resume; OUT/train.log holds one JSON
line per evaluation (the loop of models/training.py): the offset accuracy on held-out utterances shifted by
+-2, +-5, +-10 frames.
`--export` writes models/weights/sync_lips.onnx and sync_audio.onnx with their manifest entries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..avse.pool import pool_from_corpus
from ..data.noise import NOISE_KINDS, make_noise, mix_at_snr
from avcall.pipelines.nets.sync_features import AUDIO_PER_VIDEO, WINDOW, lip_frames, log_mel
from ..training import Loop, resume, train_loop
from .model import AudioEncoder, LipEncoder

SHIFTS = (-10, -5, -2, 0, 2, 5, 10)


@dataclass
class SyncConfig:
    corpus: Path
    out: Path
    steps: int = 3000
    batch: int = 128
    lr: float = 1e-3
    temperature: float = 0.1
    ckpt_every: int = 250
    seed: int = 0
    val_share: float = 0.08
    max_minutes: float = 0.0


@dataclass
class Clip:
    lip: np.ndarray  # (frames, LIP_DIM)
    mels: list[np.ndarray]  # clean, noisy: (audio frames, N_MELS)
    good: np.ndarray  # video frames t whose whole window has a face and whose shifts fit


def prepare(pool, rng: np.random.Generator) -> list[Clip]:
    half = WINDOW // 2
    clips = []
    for u in pool:
        lip = lip_frames(u.lips.astype(np.float32), u.opening, u.width, u.present)
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        noisy = u.audio
        if kind != "babble" and np.any(u.audio):
            noisy = u.audio + mix_at_snr(u.audio, make_noise(kind, len(u.audio), rng), float(rng.uniform(0, 20)))
        mels = [log_mel(u.audio), log_mel(noisy)]
        n_audio = len(mels[0]) // AUDIO_PER_VIDEO
        ok = np.asarray(u.present, bool)
        good = np.array([t for t in range(half + 15, min(len(lip), n_audio) - half - 15)
                         if ok[t - half:t + half + 1].all()], int)
        if len(good) >= 4:
            clips.append(Clip(lip, mels, good))
    return clips


def _audio_window(mel: np.ndarray, t: int) -> np.ndarray:
    start = (t - WINDOW // 2) * AUDIO_PER_VIDEO
    return mel[start:start + WINDOW * AUDIO_PER_VIDEO].T


def batch(clips: list[Clip], size: int, rng: np.random.Generator):
    lips, pos, neg = [], [], []
    for _ in range(size):
        c = clips[int(rng.integers(len(clips)))]
        t = int(c.good[int(rng.integers(len(c.good)))])
        mel = c.mels[int(rng.integers(2))]
        shift = int(rng.integers(3, 16)) * (1 if rng.random() < 0.5 else -1)
        lips.append(c.lip[t - WINDOW // 2:t + WINDOW // 2 + 1].T)
        pos.append(_audio_window(mel, t))
        neg.append(_audio_window(mel, t + shift))
    return (torch.from_numpy(np.stack(lips)), torch.from_numpy(np.stack(pos)), torch.from_numpy(np.stack(neg)))


def offset_accuracy(lip_enc, audio_enc, clips: list[Clip]) -> float:
    """Share of (clip, shift) pairs whose best offset (over +-15) is within one frame of the shift."""
    hits = total = 0
    with torch.no_grad():
        for c in clips:
            ts = c.good
            le = lip_enc(torch.from_numpy(np.stack([c.lip[t - 2:t + 3].T for t in ts])))
            for shift in SHIFTS:
                dists = []
                for o in range(-15, 16):
                    idx = [t + shift + o for t in ts]
                    valid = [i for i, x in enumerate(idx) if WINDOW // 2 <= x and (x + 3) * AUDIO_PER_VIDEO <= len(c.mels[0])]
                    if not valid:
                        dists.append(np.inf)
                        continue
                    ae = audio_enc(torch.from_numpy(np.stack([_audio_window(c.mels[0], idx[i]) for i in valid])))
                    dists.append(float((le[valid] - ae).norm(dim=1).mean()))
                found = -(int(np.argmin(dists)) - 15)  # the audio was moved by `shift`: the lips lead by -shift
                hits += abs(found - shift) <= 1
                total += 1
    return hits / max(total, 1)


def train(cfg: SyncConfig, progress: bool = True) -> dict:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    pool = pool_from_corpus(cfg.corpus)
    order = rng.permutation(len(pool))
    n_val = max(2, int(len(pool) * cfg.val_share))
    val = prepare([pool[i] for i in order[:n_val]], np.random.default_rng(1))[:24]
    clips = prepare([pool[i] for i in order[n_val:]], rng)
    lip_enc, audio_enc = LipEncoder(), AudioEncoder()
    params = list(lip_enc.parameters()) + list(audio_enc.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    config = {k: str(v) for k, v in asdict(cfg).items()}

    def restore(state: dict) -> None:
        lip_enc.load_state_dict(state["lips"])
        audio_enc.load_state_dict(state["audio"])
        opt.load_state_dict(state["opt"])

    ckpt = cfg.out / "checkpoint.pt"
    step = resume(ckpt, restore)
    if step:
        rng = np.random.default_rng([cfg.seed, step])

    def one_step(_: int) -> torch.Tensor:
        lips, pos, neg = batch(clips, cfg.batch, rng)
        le, pe, ne = lip_enc(lips), audio_enc(pos), audio_enc(neg)
        return info_nce(le, pe, ne, cfg.temperature)

    def evaluate(_: int) -> dict:
        lip_enc.eval(), audio_enc.eval()
        accuracy = round(offset_accuracy(lip_enc, audio_enc, val), 4)
        lip_enc.train(), audio_enc.train()
        return {"val_offset_within_1": accuracy}

    done = train_loop(one_step, opt, Loop(steps=cfg.steps, every=cfg.ckpt_every, checkpoint=ckpt,
                                          max_minutes=cfg.max_minutes, log=cfg.out / "train.log",
                                          progress="train sync" if progress else None),
                      start=step, evaluate=evaluate,
                      state=lambda: {"lips": lip_enc.state_dict(), "audio": audio_enc.state_dict(),
                                     "opt": opt.state_dict(), "config": config})
    lip_enc.eval(), audio_enc.eval()
    final = {"val_offset_within_1": offset_accuracy(lip_enc, audio_enc, val), "step": done.step}
    torch.save({"lips": lip_enc.state_dict(), "audio": audio_enc.state_dict(), "metrics": final,
                "config": config}, cfg.out / "model.pt")
    return final


def info_nce(le: torch.Tensor, pe: torch.Tensor, ne: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE both ways: each lip window against its own voice window (the diagonal), the batch's other voice
    windows and every voice window shifted (`ne`); each voice window against the batch's lip windows."""
    logits = le @ torch.cat([pe, ne]).T / temperature  # (B, 2B): own voice on the diagonal
    target = torch.arange(len(le))
    return torch.nn.functional.cross_entropy(logits, target) + \
        torch.nn.functional.cross_entropy(pe @ le.T / temperature, target)


def export_encoders(state: dict, out_dir: Path) -> dict[str, float]:
    """A checkpoint's two encoders as sync_lips.onnx and sync_audio.onnx in out_dir (dynamic batch, the shipped
    interface), each checked against torch: {file: largest difference}."""
    from avcall.pipelines.runtime import create_session
    from avcall.pipelines.nets.sync_features import LIP_DIM, N_MELS
    from avcall.pipelines.nets.sync_judge import AUDIO_WEIGHTS, LIPS_WEIGHTS

    lip_enc, audio_enc = LipEncoder(), AudioEncoder()
    lip_enc.load_state_dict(state["lips"])
    audio_enc.load_state_dict(state["audio"])
    lip_enc.eval(), audio_enc.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    examples = {"lips": torch.randn(8, LIP_DIM, WINDOW), "mel": torch.randn(8, N_MELS, WINDOW * AUDIO_PER_VIDEO)}
    errors = {}
    for model, name, file in ((lip_enc, "lips", LIPS_WEIGHTS), (audio_enc, "mel", AUDIO_WEIGHTS)):
        path = out_dir / file
        torch.onnx.export(model, (examples[name],), str(path), input_names=[name], output_names=["embedding"],
                          dynamic_axes={name: {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17,
                          dynamo=False)
        with torch.no_grad():
            want = model(examples[name]).numpy()
        got = create_session(path, threads=1).run(None, {name: examples[name].numpy()})[0]
        errors[file] = float(np.abs(want - got).max())
        if errors[file] > 1e-4:
            raise RuntimeError(f"{file}: onnxruntime and torch differ by {errors[file]}")
    return errors


def export(run: Path, out_dir: Path, metrics: dict | None = None) -> dict:
    """The two encoders as ONNX (dynamic batch) beside each other, with parity checked and manifest entries."""
    from avcall.export.manifest import REAL_VOICE_CREDITS, corpus_info, write_manifest_entry

    state = torch.load(run / "model.pt")
    errors = export_encoders(state, out_dir)
    config = state["config"]
    corpus = corpus_info(config["corpus"])
    entries = {}
    for file, error in errors.items():
        arch = "LipEncoder" if "lips" in file else "AudioEncoder"
        credits = [f"avcall sync judge: {arch} (this repository, Apache-2.0)",
                   "Training voices, lips and noise: the corpus named under `corpus` (avcall corpus make)"]
        entries[file] = write_manifest_entry(
            out_dir / file, recipe=f"avcall train sync --corpus {config['corpus']} --out {config['out']} --steps "
            f"{config['steps']} --batch {config['batch']} --seed {config['seed']} --export",
            corpus=corpus, metrics=(metrics or {}) | dict(state["metrics"]) | {"parity_max_abs": error},
            credits=credits + (REAL_VOICE_CREDITS if corpus.get("real_voices") else []),
            latency_ms=1000 * WINDOW / 25 / 2, manifest=out_dir / "manifest.json",
            extra={"arch": arch, "role": "sync judge"})
    return entries


def run(args) -> dict:
    from avcall.pipelines.runtime import weights_dir

    result = train(SyncConfig(corpus=args.corpus, out=args.out, steps=args.steps, batch=args.batch, seed=args.seed,
                              ckpt_every=args.ckpt_every, max_minutes=args.max_minutes), progress=not args.quiet)
    if args.export:
        export(args.out, weights_dir())
    return result
