"""`avcall train lip-gate-net`: the lip gate's net (pipelines/nets/lip_gate_net.py), trained on real faces.

The second design of the gate's scorer. The first (models/lip_gate/train.py, a logistic model over hand-made
features and the sync judge's streamed evidence) plateaued at an AUC of 0.82 on held-out speakers: it cannot
tell a listener whose lips keep moving from a speaker, because its only evidence of sync is the judge's weak
per-second score. This one sees the lips and the voice themselves, hop by hop, and a GRU learns when they go
together; it replaces the judge in the gate (which also cuts the gate's CPU).

Data (training folders only, never talking_faces/, speech/ or noise/): each clip of ../shared/data/av_train
(GRID's one speaker capped at GRID_CLIPS) and PORTRAITS generated talking portraits (the demo's face; never held
out) in the `turns` condition VARIANTS times (other voices from
speech_train, generated noises; each variant its own seed), in generated noise at 0-10 dB (the face talks
throughout), and with the lips of another speaker's clip (nothing there is the face's voice: the lips move,
but not with it). Labels per hop: the target alone (1), the other voice alone or a voice the lips do not
belong to (0), the rest left out. Every fifth speaker is held out: the net kept is the one with the best AUC on
them, and that AUC is what the manifest states.

Training (the loop of models/training.py): random 6 s crops, Adam, BCE with the two classes weighed equally; a
checkpoint every CKPT_EVERY steps that `--resume` picks up, a JSON log line per LOG_EVERY steps (the held-out AUC
every CKPT_EVERY), `--minutes` as a time budget.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from avcall.pipelines.errors import InputError
from avcall.pipelines.frames import HOP_SAMPLES, LipFeatures
from avcall.pipelines.lip_gate import MIN_CONFIDENCE
from avcall.pipelines.nets.lip_gate_net import INPUTS, WEIGHTS, GateInputs, LevelFloor

from ..data.shared_data import shared_data_dir
from ..training import Best, Loop, resume, train_loop
from .train import NOISES, NOISY_SNRS, OTHER_UTTERANCES, auc, noisy_example, speaker, training_clips

VARIANTS = 3  # turns examples per clip, each with other voices, noise and placement of its own
PORTRAITS = 30  # generated talking portraits (models/data/portrait.py: the demo's, the benches' and the tests'
# faces, whose lips the corpus's lip model moves): without them the net takes those lips for a face that listens
OTHER_LIPS_WEIGHT = 0.5  # the examples with another face's lips, against the rest
CROP = 600  # hops: 6 s
CKPT_EVERY, LOG_EVERY = 200, 50


def sequence(mixture: np.ndarray, frames: list[LipFeatures]) -> np.ndarray:
    """(hops, INPUTS): what the net sees of `mixture` with `frames` coming as they would live."""
    inputs, floor = GateInputs(), LevelFloor()
    rows, k = [], 0
    for h in range(len(mixture) // HOP_SAMPLES):
        t = h * HOP_SAMPLES / 16000
        while k < len(frames) and frames[k].pts <= t:
            f = frames[k]
            inputs.lips(f if f.present and f.confidence >= MIN_CONFIDENCE else None)
            k += 1
        part = mixture[h * HOP_SAMPLES:(h + 1) * HOP_SAMPLES]
        rows.append(inputs.hop(part, floor(part)[1]))
    return np.stack(rows)


def who(clip: Path) -> str:
    """The clip's speaker: av_train's by its file name; the generated portraits are one."""
    return "portrait" if clip.name.startswith("portrait_") else speaker(clip)


def labels(ex) -> np.ndarray:
    n = len(ex.mixture) // HOP_SAMPLES
    y = np.full(n, -1, np.int8)
    y[ex.target_only[:n]] = 1
    y[ex.other_only[:n]] = 0
    return y


def looped(frames: list[LipFeatures], n: int, fps: float) -> list[LipFeatures]:
    """`n` frames of `frames` played to and fro from the start, on a clock from 0."""
    k = np.arange(n) % (2 * len(frames))
    idx = np.where(k < len(frames), k, 2 * len(frames) - 1 - k)
    return [LipFeatures(pts=i / fps, present=frames[j].present, confidence=frames[j].confidence,
                        shape=frames[j].shape, opening=frames[j].opening, width=frames[j].width)
            for i, j in enumerate(idx)]


def portrait_clips(n: int, folder: Path) -> list[Path]:
    """`n` talking portraits, two corpus sentences each with a pause between (made once, kept in `folder`); none
    of them the demo's lines. [] without a text-to-speech engine."""
    from ..data.portrait import write_talking_portrait

    lines = [line.split("\t")[-1].strip() for line in
             (Path(__file__).parents[1] / "data" / "sentences.txt").read_text().splitlines() if line.strip()]
    lines = [x for x in lines if not x.startswith(("anna will send", "please call me"))]
    step = max(1, len(lines) // (2 * n))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"portrait_{i:03d}.mp4"
        if not path.is_file() and not write_talking_portrait(path, [lines[(2 * i) * step], lines[(2 * i + 1) * step]]):
            return []
        out.append(path)
    return out


def build_data(data: Path, seed: int, clips: int | None, cache: Path | None) -> dict:
    """{"x": [arrays], "y": [arrays], "w": [weights], "who": [speakers], "kind": [...]} (cached at `cache`)."""
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=True) as z:
            return {k: list(z[k]) for k in z.files}
    import soundfile as sf

    from ..data.measure import measure_video
    from ..data.noise import make_noise
    from ..data.tts import to_16k
    from ..data.turns import build, recognised_words

    def read(path: Path) -> np.ndarray:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        return to_16k(audio.mean(axis=1), rate)

    others = [read(p) for p in sorted((data / "speech_train").rglob("*.flac"))[:OTHER_UTTERANCES]]
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {"x": [], "y": [], "w": [], "who": [], "kind": []}
    from ..data.example import cache_root

    chosen = training_clips(data)[:clips or None]
    chosen += portrait_clips(PORTRAITS if clips is None else 0, cache_root() / "lip_gate_portraits")
    measured = []
    began = time.time()
    for i, clip in enumerate(chosen):
        m = measure_video(clip)
        audio = np.asarray(m.audio, np.float32)
        words = recognised_words(audio)
        measured.append((clip, m, audio))
        for v in range(VARIANTS):
            noise = make_noise(NOISES[(i + v) % len(NOISES)], 20 * 16000, rng, others)
            ex = build(audio, m.track, float(m.audio_offset), words, others, noise, seed + v, clip.name)
            if ex is None:
                continue
            frames = ex.lips.frames()
            _add(out, sequence(ex.mixture, frames), labels(ex), 1.0, who(clip), "turns")
            if v == 0:  # the same call with another face's lips: no voice here is this face's
                j = (i + 1 + int(rng.integers(len(chosen) - 1))) % len(chosen) if len(chosen) > 1 else i
                other_frames = measured[j][1].track.frames() if j < len(measured) else \
                    measure_video(chosen[j]).track.frames()
                y = labels(ex)
                y[y == 1] = 0
                _add(out, sequence(ex.mixture, looped(other_frames, len(frames), ex.lips.fps)), y,
                     OTHER_LIPS_WEIGHT, who(clip), "other lips")
        noisy = noisy_example(audio, m.track, float(m.audio_offset),
                              make_noise(NOISES[(i + 1) % len(NOISES)], len(audio), rng, others),
                              NOISY_SNRS[i % len(NOISY_SNRS)])
        _add(out, sequence(noisy.mixture, noisy.lips.frames()), labels(noisy), 1.0, who(clip), "noisy")
        print(f"lip-gate-net: data {i + 1}/{len(chosen)} {clip.name} ({time.time() - began:.0f} s)",
              file=sys.stderr, flush=True)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **{k: np.array(v, dtype=object) for k, v in out.items()})
    return out


def _add(out: dict, x: np.ndarray, y: np.ndarray, w: float, who: str, kind: str) -> None:
    n = min(len(x), len(y))
    if (y[:n] >= 0).any():
        for key, value in (("x", x[:n]), ("y", y[:n]), ("w", w), ("who", who), ("kind", kind)):
            out[key].append(value)


def make_net(hidden: int):
    import torch
    from torch import nn

    from avcall.pipelines.nets.sync_features import LIP_DIM

    class GateNet(nn.Module):
        """Lips and voice each through a layer of their own, then a GRU over the hops, a chance per hop."""

        def __init__(self) -> None:
            super().__init__()
            self.lips = nn.Sequential(nn.Dropout(0.1), nn.Linear(2 * LIP_DIM, 48), nn.ReLU())
            self.voice = nn.Sequential(nn.Linear(INPUTS - 2 * LIP_DIM, 48), nn.ReLU())
            self.gru = nn.GRU(96, hidden, batch_first=True)
            self.out = nn.Linear(hidden, 1)

        def forward(self, inputs, state):
            z = torch.cat([self.lips(inputs[..., :2 * LIP_DIM]), self.voice(inputs[..., 2 * LIP_DIM:])], -1)
            y, state = self.gru(z, state)
            return self.out(y)[..., 0], state

    return GateNet()


def evaluate(net, xs: list[np.ndarray], ys: list[np.ndarray]) -> float:
    """Per-hop AUC over whole examples run from a fresh state."""
    import torch

    ps, ls = [], []
    net.eval()
    with torch.no_grad():
        for x, y in zip(xs, ys):
            logit, _ = net(torch.from_numpy(x[None]), torch.zeros(1, 1, net.gru.hidden_size))
            keep = y >= 0
            ps.append(logit[0].numpy()[keep])
            ls.append(y[keep])
    net.train()
    return auc(np.concatenate(ps), np.concatenate(ls).astype(float))


def train(args) -> dict:
    import torch

    data = Path(args.data) if args.data else shared_data_dir()
    if data is None or not (data / "av_train").is_dir():
        raise InputError("avcall train lip-gate-net: needs ../shared/data/av_train beside the checkout (or --data DIR "
                         "with av_train/clips/, speech_train/)")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    d = build_data(data, args.seed, args.clips, out_dir / "data.npz")
    speakers = sorted(set(d["who"]))
    held = set([s for s in speakers if s != "portrait"][::5])  # real speakers only: the portraits always train
    train_i = [i for i, who in enumerate(d["who"]) if who not in held]
    val_i = [i for i, who in enumerate(d["who"]) if who in held and d["kind"][i] != "other lips"]
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    net = make_net(args.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    ckpt, best, kept = out_dir / "checkpoint.pt", Best(-1.0), {"auc": -1.0, "step": 0}

    def restore(state: dict) -> None:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        kept.update(state["best"])
        best.value = kept["auc"]

    step = resume(ckpt if args.resume else None, restore)
    rng = np.random.default_rng(args.seed + step)
    weights = np.array([d["w"][i] for i in train_i], float)
    pos = sum(int((d["y"][i] == 1).sum()) for i in train_i)
    neg = sum(int((d["y"][i] == 0).sum()) for i in train_i)
    class_w = {1: 0.5 * (pos + neg) / pos, 0: 0.5 * (pos + neg) / neg}

    def one_step(_: int) -> torch.Tensor:
        pick = rng.choice(train_i, size=args.batch, p=weights / weights.sum())
        xb = np.zeros((args.batch, CROP, INPUTS), np.float32)
        wb = np.zeros((args.batch, CROP), np.float32)
        yb = np.zeros((args.batch, CROP), np.float32)
        for b, i in enumerate(pick):
            x, y = d["x"][i], d["y"][i]
            s = int(rng.integers(max(1, len(x) - CROP + 1)))
            n = min(CROP, len(x) - s)
            xb[b, :n], yb[b, :n] = x[s:s + n], np.maximum(y[s:s + n], 0)
            wb[b, :n] = np.where(y[s:s + n] < 0, 0.0, np.where(y[s:s + n] == 1, class_w[1], class_w[0])) * d["w"][i]
        logit, _ = net(torch.from_numpy(xb), torch.zeros(1, args.batch, args.hidden))
        return (torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.from_numpy(yb), reduction="none")
                * torch.from_numpy(wb)).sum() / max(float(wb.sum()), 1e-6)

    def measure(step: int) -> dict:
        if step % CKPT_EVERY:
            return {}
        val = evaluate(net, [d["x"][i] for i in val_i], [d["y"][i] for i in val_i])
        row = {"held_out_auc": round(val, 4)}
        if best.offer(val, row, lambda: torch.save(net.state_dict(), out_dir / "best.pt")):
            kept.update(auc=val, step=step)
        return row

    done = train_loop(one_step, opt, Loop(steps=args.steps, every=LOG_EVERY, checkpoint=ckpt, ckpt_every=CKPT_EVERY,
                                          max_minutes=args.minutes, clip=1.0, log=out_dir / "train.log",
                                          say=lambda line: print(f"lip-gate-net: {line}", file=sys.stderr, flush=True)),
                      start=step, evaluate=measure,
                      state=lambda: {"net": net.state_dict(), "opt": opt.state_dict(), "best": dict(kept)})
    summary = {"step": done.step, "best": kept, "held_out_speakers": sorted(held), "train_examples": len(train_i),
               "held_out_examples": len(val_i), "hidden": args.hidden}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def export(args) -> dict:
    """best.pt of --out as models/weights/lip_gate_net.onnx (state in, state out), parity checked, with its
    manifest entry."""
    import torch

    from avcall.export.manifest import write_manifest_entry
    from avcall.pipelines.runtime import create_session, weights_path

    out_dir = Path(args.out)
    summary = json.loads((out_dir / "summary.json").read_text())
    net = make_net(summary["hidden"])
    net.load_state_dict(torch.load(out_dir / "best.pt"))
    net.eval()
    path = weights_path(WEIGHTS)
    x, h = torch.randn(1, 7, INPUTS), torch.zeros(1, 1, summary["hidden"])
    torch.onnx.export(net, (x, h), str(path), input_names=["inputs", "state"], output_names=["logit", "state_out"],
                      dynamic_axes={"inputs": {1: "hops"}, "logit": {1: "hops"}}, opset_version=17, dynamo=False)
    with torch.no_grad():
        want = net(x, h)[0].numpy()
    got = create_session(path).run(None, {"inputs": x.numpy(), "state": h.numpy()})[0]
    parity = float(np.abs(want - got).max())
    if parity > 1e-4:
        raise RuntimeError(f"{path}: onnxruntime and torch differ by {parity}")
    data = Path(args.data) if args.data else shared_data_dir()
    entry = write_manifest_entry(
        path, recipe=f"avcall train lip-gate-net --out {args.out} --steps {args.steps} --batch {args.batch} "
        f"--hidden {summary['hidden']} --lr {args.lr} --seed {args.seed} --export",
        corpus={"source": "../shared/data/av_train (real faces with their voices) and "
                          f"{PORTRAITS} generated talking portraits (models/data/portrait.py) in the turns condition "
                          f"({VARIANTS} variants a clip), in generated noise at "
                          f"{', '.join(f'{s:g}' for s in NOISY_SNRS)} dB and with another speaker's lips; other voices "
                          "from speech_train; generated noises",
                "clips": [c.name for c in training_clips(data)[:args.clips or None]] if data else None,
                "examples": summary["train_examples"] + summary["held_out_examples"]},
        metrics={"held_out_speakers_auc": round(summary["best"]["auc"], 4), "step": summary["best"]["step"],
                 "held_out_speakers": summary["held_out_speakers"], "parity_max_abs": parity},
        credits=["avcall lip gate net: lips and voice through a GRU (this repository, Apache-2.0)",
                 "av_train clips (research use, see ../shared/data/av_train/README.md)",
                 "LibriSpeech (Panayotov et al. 2015), CC BY 4.0: the other voices"],
        latency_ms=0, extra={"arch": "GateNet", "role": "lip gate"})
    return entry


def run(args) -> dict:
    result = train(args)
    if args.export:
        result["export"] = export(args)["sha256"]
    return result


def add_arguments(p) -> None:
    p.add_argument("--data", type=Path, help="folder laid out like ../shared/data (default: it)")
    p.add_argument("--out", type=Path, default=Path("runs/lip_gate_net"),
                   help="run folder: the built data (data.npz), checkpoints, train.log, summary.json")
    p.add_argument("--clips", type=int, help="only the first N training clips (a quick look)")
    p.add_argument("--steps", type=int, default=1000,
                   help="training steps (the held-out AUC peaked near 800 and fell after: it learns the faces)")
    p.add_argument("--minutes", type=float, default=40.0, help="time budget (the run stops and keeps its best)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared by a call)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="go on from --out's checkpoint")
    p.add_argument("--export", action="store_true",
                   help="write models/weights/lip_gate_net.onnx and its manifest entry")
