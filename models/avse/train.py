"""`avcall train avse`: trains the enhancer (with lips, or audio-only) on a corpus made by `avcall corpus make`.

Random 3 s crops of the corpus examples; loss = negative SI-SDR of the reconstructed waveform plus an L1 on
compressed magnitudes. Modality dropout: the lip stream is removed for a whole crop (25%) or for a stretch
of it (25% more), so that the AV model falls back to audio-only quality, never below, when the face goes.
Checkpoints every `ckpt_every` steps into OUT/checkpoint.pt; run again with the same OUT to resume. The log
(OUT/train.log, one JSON line per evaluation) says where it stands (the loop of models/training.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ...pipelines.errors import InputError
from avcall.pipelines.face.lip_model import LipModel
from avcall.pipelines.nets.enhancer_features import HOP, WINDOW
from ..training import Loop, cosine, resume, train_loop
from .avdcnn import AVDCNN
from .model import Enhancer
from .pool import Mixer, Utterance, load_pool, pool_from_corpus


@dataclass
class TrainConfig:
    corpus: Path | None
    out: Path
    pool: Path | None = None  # a packed pool instead of the corpus (see pool.py)
    workers: int = 2
    use_lips: bool = True
    arch: str = "avcall"  # or "avdcnn", the baseline (always with lips)
    steps: int = 6000
    batch: int = 16
    crop_s: float = 3.0
    lr: float = 1e-3
    hidden: int = 256
    val_share: float = 0.05
    ckpt_every: int = 250
    seed: int = 0
    device: str = "cpu"
    max_minutes: float = 0.0  # stop (checkpointed, resumable) after this long; 0 = until `steps`
    init: Path | None = None  # warm start: the weights of an earlier run's model.pt (fresh optimiser and schedule)


# --- STFT in torch, the same framing as features.stft -------------------------------------------------
def _window(device) -> torch.Tensor:
    return torch.sqrt(torch.hann_window(WINDOW, periodic=True, device=device))


def torch_stft(x: torch.Tensor) -> torch.Tensor:
    """x (B, N) -> (B, T, N_FREQ) complex, causal framing as features.stft."""
    padded = torch.nn.functional.pad(x, (WINDOW - HOP, 0))
    frames = padded.unfold(-1, WINDOW, HOP)[:, : x.shape[-1] // HOP]
    return torch.fft.rfft(frames * _window(x.device), dim=-1)


def torch_istft(spec: torch.Tensor, length: int) -> torch.Tensor:
    frames = torch.fft.irfft(spec, n=WINDOW, dim=-1) * _window(spec.device)  # (B, T, WINDOW)
    b, t, _ = frames.shape
    out = torch.nn.functional.fold(frames.transpose(1, 2), output_size=(1, HOP * t + WINDOW - HOP),
                                   kernel_size=(1, WINDOW), stride=(1, HOP))
    return out.reshape(b, -1)[:, WINDOW - HOP:WINDOW - HOP + length]


def compressed(spec: torch.Tensor) -> torch.Tensor:
    """|X|^0.3, with a floor so that the gradient at silence stays finite."""
    return (spec.real.pow(2) + spec.imag.pow(2) + 1e-8).pow(0.15)


def si_sdr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    proj = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps) * ref
    return 10 * torch.log10(proj.pow(2).sum(-1) / ((est - proj).pow(2).sum(-1) + eps) + eps)


def log_power(spec: torch.Tensor) -> torch.Tensor:
    return torch.log(spec.real.pow(2) + spec.imag.pow(2) + 1e-8)


def enhance_batch(model: Enhancer, mixture: torch.Tensor, lips: torch.Tensor | None) -> torch.Tensor:
    spec = torch_stft(mixture)
    mask, _ = model(log_power(spec), lips, model.initial_state(mixture.shape[0]).to(mixture.device))
    return torch_istft(spec * mask, mixture.shape[-1])


# --- data -------------------------------------------------------------------------------------------
def drop_lips(stream: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Modality dropout: no face for the whole crop (25%) or for a 0.3-1.5 s stretch of it (25%)."""
    u = rng.random()
    if u < 0.25:
        stream = np.zeros_like(stream)
    elif u < 0.5:
        stream = stream.copy()
        a = int(rng.integers(0, len(stream)))
        stream[a:a + int(rng.integers(30, 150))] = 0
    return stream


class Batches(torch.utils.data.IterableDataset):
    """Endless batches of fresh mixtures; each loader worker draws from its own seeded generator."""

    def __init__(self, mixer: Mixer, batch: int, seed: int, step: int) -> None:
        self.mixer, self.batch, self.seed, self.step = mixer, batch, seed, step

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, self.step, info.id if info else 0])
        while True:
            items = [self.mixer.draw(rng) for _ in range(self.batch)]
            mix, tgt, lips = (np.stack(x) for x in zip(*items))
            lips = np.stack([drop_lips(s, rng) for s in lips])
            yield torch.from_numpy(mix), torch.from_numpy(tgt), torch.from_numpy(lips)


def validation_set(mixer: Mixer, n: int = 64) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The same n mixtures every time (fixed seed), faces present."""
    rng = np.random.default_rng(12345)
    return [mixer.draw(rng) for _ in range(n)]


# --- training ---------------------------------------------------------------------------------------
def evaluate(model: Enhancer, val: list, device: str) -> dict:
    model.eval()
    mix, tgt, lips = (torch.from_numpy(np.stack(x)).to(device) for x in zip(*val))
    with torch.no_grad():
        out = enhance_batch(model, mix, lips if model.use_lips else None)
        score = si_sdr(out, tgt)
        gain = score - si_sdr(mix, tgt)
        no_face = si_sdr(enhance_batch(model, mix, torch.zeros_like(lips)), tgt) if model.use_lips else score
    model.train()
    return {"val_si_sdr": round(float(score.mean()), 3), "val_si_sdr_improvement": round(float(gain.mean()), 3),
            "val_si_sdr_no_face": round(float(no_face.mean()), 3)}


def split_pool(pool: list[Utterance], share: float, seed: int) -> tuple[list[Utterance], list[Utterance]]:
    order = np.random.default_rng(seed).permutation(len(pool))
    n_val = max(1, int(len(pool) * share))
    return [pool[i] for i in order[n_val:]], [pool[i] for i in order[:n_val]]


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    torch.manual_seed(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    mean_shape = LipModel.load().mean
    pool = load_pool(cfg.pool) if cfg.pool else pool_from_corpus(cfg.corpus)
    train_pool, val_pool = split_pool(pool, cfg.val_share, cfg.seed)
    val = validation_set(Mixer(val_pool, mean_shape, crop_s=4.0))
    model = (AVDCNN() if cfg.arch == "avdcnn" else Enhancer(use_lips=cfg.use_lips, hidden=cfg.hidden)).to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine(1.0, s, cfg.steps))
    config = {k: str(v) for k, v in asdict(cfg).items()}

    def restore(state: dict) -> None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])

    ckpt = cfg.out / "checkpoint.pt"
    step = resume(ckpt, restore, map_location=cfg.device)
    if not step and cfg.init:
        model.load_state_dict(torch.load(cfg.init, map_location=cfg.device)["model"])
    batches = torch.utils.data.DataLoader(Batches(Mixer(train_pool, mean_shape, crop_s=cfg.crop_s), cfg.batch,
                                                  cfg.seed, step), batch_size=None, num_workers=cfg.workers,
                                          persistent_workers=cfg.workers > 0, prefetch_factor=4 if cfg.workers else None)
    stream = iter(batches)

    def one_step(_: int) -> torch.Tensor:
        mix, tgt, lips = (a.to(cfg.device, non_blocking=True) for a in next(stream))
        if cfg.arch == "avdcnn":  # the paper's multi-task MSE on log spectra and lips
            return model.multitask_loss(log_power(torch_stft(mix)), lips, log_power(torch_stft(tgt)))
        out = enhance_batch(model, mix, lips if cfg.use_lips else None)
        loss = -si_sdr(out, tgt).mean()
        return loss + 10 * (compressed(torch_stft(out)) - compressed(torch_stft(tgt))).abs().mean()

    train_loop(one_step, opt, Loop(steps=cfg.steps, every=cfg.ckpt_every, checkpoint=ckpt, clip=5.0,
                                   max_minutes=cfg.max_minutes, log=cfg.out / "train.log", digits=3,
                                   progress=(f"train {cfg.arch}" + ("" if cfg.use_lips else " (audio-only)"))
                                   if progress else None),
               start=step, evaluate=lambda _: evaluate(model, val, cfg.device), sched=sched,
               state=lambda: {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                              "config": config})
    final = evaluate(model, val, cfg.device)
    torch.save({"model": model.state_dict(), "config": config, "metrics": final}, cfg.out / "model.pt")
    return final


def run(args) -> dict:
    if (args.corpus is None) == (args.pool is None):
        raise InputError("give exactly one of --corpus and --pool")
    cfg = TrainConfig(corpus=args.corpus, pool=args.pool, out=args.out, use_lips=not args.audio_only, arch=args.arch,
                      steps=args.steps, batch=args.batch, lr=args.lr, hidden=args.hidden, workers=args.workers,
                      ckpt_every=args.ckpt_every, seed=args.seed,
                      device=args.device or ('cuda' if torch.cuda.is_available() else 'cpu'),
                      max_minutes=args.max_minutes, init=args.init)
    return train(cfg, progress=not args.quiet)
