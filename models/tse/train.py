"""Train the extractor's separator on mixtures of real voices, mixed on the device from one packed array.

  avcall train tse --voices voices.npz --out RUN [--device cuda] [--steps N] [--max-minutes M]

Each step draws `batch` pairs of utterances of two different training speakers (vectorised gather from the
packed int16 array: random crops, looped where short), sets the second at -5..5 dB under the first and the pair
at -35..-15 dBFS; a share `single` of the examples has one talker and a faint coloured noise as the second source
(so that one voice stays in one stream). Design 1 (`--design separate`): loss = -PIT SI-SDR over the two streams.
Design 2 (`--design lips`, needs `--lips`, the judge's lip embeddings per 40 ms of the av_train utterances):
stream 0 must be the voice whose lips are given; loss = -SI-SDR of stream 0 and of stream 1.
Validation: the same fixed batch of held-out speakers (speaker-disjoint, pack.py) every `eval_every` steps; the
log RUN/train.log is one JSON line per evaluation; RUN/checkpoint.pt every `ckpt_every` steps (run again with
the same RUN to resume; the loop of models/training.py); at the end RUN/model.pt and, with --export, the
streaming ONNX (export_onnx).
Threads: torch.set_num_threads(--threads), 1 by default (a shared CPU).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from avcall.pipelines.frames import SAMPLE_RATE

from ..training import Loop, cosine, resume, train_loop
from .model import FRAME, HOP, Separator, pit_si_sdr, si_sdr

VIDEO_FRAME = 640  # samples per 40 ms video frame


class Voices:
    """The packed voices on a device, and batches of mixtures drawn from them there."""

    def __init__(self, path: Path, device: str, val: bool, lips: Path | None = None) -> None:
        z = np.load(path, allow_pickle=False)
        keep = z["val"] == val
        self.audio = torch.from_numpy(z["audio"]).to(device)  # int16, or 8-bit mu-law codes (pack.compact)
        self.table = torch.from_numpy(z["mulaw"]).to(device) if "mulaw" in z.files else None
        self.starts = torch.from_numpy(z["starts"][keep]).to(device)
        self.lengths = torch.from_numpy(z["lengths"][keep]).to(device)
        self.speaker = torch.from_numpy(z["speaker"][keep].astype(np.int64)).to(device)
        self.index = np.nonzero(keep)[0]
        self.device = device
        self.lip = None
        if lips is not None:  # the faces' lip embeddings, one row per 40 ms (pack_lips), padded per utterance
            zl = np.load(lips)
            has = zl["has"][keep]
            emb, first = zl["emb"].astype(np.float32), zl["emb_start"][keep]
            frames = -(-self.lengths.cpu().numpy() // VIDEO_FRAME)
            padded = np.zeros((len(has), int(frames[has].max()) if has.any() else 1, emb.shape[1]), np.float32)
            for i in np.nonzero(has)[0]:
                padded[i, :frames[i]] = emb[first[i]:first[i] + frames[i]]
            self.lip = torch.from_numpy(padded).to(device)
            self.lip_rows = torch.from_numpy(np.nonzero(has)[0]).to(device)

    def batch(self, n: int, samples: int, gen: torch.Generator, single: float = 0.15):
        dev = self.device
        u = len(self.starts)
        if self.lip is not None:
            a = self.lip_rows[torch.randint(len(self.lip_rows), (n,), generator=gen, device=dev)]
        else:
            a = torch.randint(u, (n,), generator=gen, device=dev)
        b = torch.randint(u, (n,), generator=gen, device=dev)
        for _ in range(8):  # another speaker for the second voice
            same = self.speaker[a] == self.speaker[b]
            if not bool(same.any()):
                break
            b = torch.where(same, torch.randint(u, (n,), generator=gen, device=dev), b)
        ar = torch.arange(samples, device=dev)

        def crop(idx, offset=None):
            length = self.lengths[idx]
            if offset is None:
                span = torch.clamp(length - samples, min=1)
                offset = (torch.rand(n, generator=gen, device=dev) * span).long()
            pos = self.starts[idx, None] + (offset[:, None] + ar[None]) % length[:, None]
            codes = self.audio[pos]
            return (self.table[codes.long()] if self.table is not None else codes.float() / 32768.0), offset

        s1, off1 = crop(a)
        s2, _ = crop(b)
        # the second voice -5..5 dB under the first; a share with one talker and a faint coloured noise instead
        rms = lambda x: x.pow(2).mean(-1, keepdim=True).clamp_min(1e-10).sqrt()
        s1 = s1 / rms(s1)
        s2 = s2 / rms(s2)
        snr = (torch.rand(n, 1, generator=gen, device=dev) * 10 - 5)
        s2 = s2 * 10 ** (-snr / 20)
        lone = torch.rand(n, 1, generator=gen, device=dev) < single
        noise = torch.randn(n, samples, generator=gen, device=dev)
        pole = torch.rand(n, 1, generator=gen, device=dev) * 0.95
        noise = noise + pole * torch.roll(noise, 1, -1)
        noise = noise / rms(noise) * 10 ** (-(15 + 15 * torch.rand(n, 1, generator=gen, device=dev)) / 20)
        s2 = torch.where(lone, noise, s2)
        level = 10 ** ((-35 + 20 * torch.rand(n, 1, generator=gen, device=dev)) / 20)
        mix_rms = rms(s1 + s2)
        s1, s2 = s1 / mix_rms * level, s2 / mix_rms * level
        cond = None
        if self.lip is not None:
            frames = (off1[:, None] + ar[None, ::FRAME]) // VIDEO_FRAME  # the video frame of each 5 ms frame
            frames = frames.clamp(max=self.lip.shape[1] - 1)
            cond = self.lip[a[:, None], frames]  # (n, F, 64)
        return s1 + s2, torch.stack([s1, s2], 1), cond


def export_onnx(model: Separator, path: Path) -> None:
    """One 10 ms hop per call: mix (1, 160), state (1, H, S)[, lips (1, 2, 64)] -> streams (1, 2, 160), state."""
    model = model.eval().cpu()
    mix = torch.zeros(1, HOP)
    state = model.initial_state(1)
    args, names = (mix, state), ["mix", "state"]
    if model.cond_dim:
        args, names = (mix, state, torch.zeros(1, HOP // FRAME, model.cond_dim)), ["mix", "state", "lips"]
    torch.onnx.export(model, args, str(path), input_names=names, output_names=["streams", "state_out"],
                      opset_version=17, dynamo=False)


def evaluate(model, data: Voices, batch) -> dict:
    model.eval()
    with torch.no_grad():
        mix, refs, cond = batch
        ests, _ = model(mix, cond=cond)
        if model.cond_dim:
            value, base = si_sdr(refs[:, 0], ests[:, 0]), si_sdr(refs[:, 0], mix)
        else:  # both streams, each against the mixture
            value, _ = pit_si_sdr(refs, ests)
            base = (si_sdr(refs[:, 0], mix) + si_sdr(refs[:, 1], mix)) / 2
    model.train()
    return {"val_si_sdr": float(value.mean()), "val_si_sdri": float((value - base).mean())}


def run(a) -> dict:
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = a.device
    cond_dim = 64 if a.design == "lips" else 0
    train = Voices(a.voices, dev, val=False, lips=a.lips)
    val = Voices(a.voices, dev, val=True, lips=a.lips)
    samples = int(a.seconds * SAMPLE_RATE) // HOP * HOP
    vgen = torch.Generator(device=dev).manual_seed(1234)
    val_batch = val.batch(a.val_batch, samples, vgen, single=0.0)
    model = Separator(cond_dim=cond_dim).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    ckpt = out / "checkpoint.pt"
    step = resume(ckpt, lambda state: (model.load_state_dict(state["model"]), opt.load_state_dict(state["opt"])),
                  map_location=dev)
    if not step and a.init:
        own = model.state_dict()
        init = torch.load(a.init, map_location=dev)
        init = init.get("model", init)  # a checkpoint.pt or a model.pt
        got = {k: v for k, v in init.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(got, strict=False)
    gen = torch.Generator(device=dev).manual_seed(a.seed * 100003 + step)
    began, last = time.time(), []
    lr = lambda step: cosine(a.lr, step, a.steps)  # noqa: E731

    def one_step(_: int) -> torch.Tensor:
        mix, refs, cond = train.batch(a.batch, samples, gen)
        ests, _ = model(mix, cond=cond)
        if cond_dim:
            value = (si_sdr(refs[:, 0], ests[:, 0]) + si_sdr(refs[:, 1], ests[:, 1])) / 2
        else:
            value, _ = pit_si_sdr(refs, ests)
        loss = -value.clamp(max=30).mean()
        last.append(-loss.item())
        return loss

    def measure(step: int) -> dict:
        row = {"train_si_sdr": round(float(np.mean(last)), 3), "lr": lr(step - 1),
               "minutes": round((time.time() - began) / 60, 2)} | evaluate(model, val, val_batch)
        last.clear()
        return row

    done = train_loop(one_step, opt, Loop(steps=a.steps, every=a.eval_every, checkpoint=ckpt, ckpt_every=a.ckpt_every,
                                          max_minutes=a.max_minutes, clip=5.0, log=out / "train.log"),
                      start=step, evaluate=measure, lr=lr,
                      state=lambda: {"model": model.state_dict(), "opt": opt.state_dict()})
    torch.save(model.state_dict(), out / "model.pt")
    result = {"step": done.step, **evaluate(model, val, val_batch)}
    if a.export:
        export_onnx(model, out / ("tse_lips.onnx" if cond_dim else "tse_sep.onnx"))
    with (out / "train.log").open("a") as log:
        log.write(json.dumps({"done": result}) + "\n")
    return result
