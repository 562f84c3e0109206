"""The voice-to-lips net trained on real mouths: `av_train`'s clips, each speaker's own voice and the tracker's
lips of the same recording (issue 23).

`track_clips` runs the face tracker once over the folder (one .npz per clip in a cache folder, resumable:
lips, opening, width, face present, the voice on the video's clock). `real_items` turns them into training
items: the clip's lip shapes taken about its own median mouth and put about the lip model's mean (a speaker's
rest mouth is not in the voice), the opening as tracked (closed lips are 0 for everyone), the width about its
median. `split` keeps the validation speakers out of training entirely (speaker-disjoint). `train_real`
draws crops speaker-balanced (GRID s1, 80% of the minutes, is one speaker among the rest, at `grid_share`),
degrades the voices as calls hear them (`train.degrade`), and keeps the checkpoint whose whole-clip
mouth-opening r on the validation speakers is best (early stopping); checkpoints and a JSON-lines log in
the run folder; resumes.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from avcall.pipelines.nets.voice_to_lips import LOOKAHEAD, OUT_DIM
from .features import lip_targets

# speaker-disjoint validation: one or two speakers of each kind outside GRID, none that speaks a dev clip
VAL_SPEAKERS = ("lrs3_avcrossnet_E3", "lrs3_avcrossnet_E5", "hdtf_WDA_BobMenendez", "hdtf_RD_Radio2",
                "vox_pcavs_7961", "vox_pcavs_6816", "web_KristiNoem", "web_headpose31")


def manifest(root: Path) -> list[dict]:
    with (Path(root) / "MANIFEST.tsv").open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


def track_clips(root: Path, cache: Path, log=print) -> list[Path]:
    """Track every clip of `root` once (GRID last); one .npz per clip in `cache`, skipped when present."""
    from avcall.models.data.measure import clip_signals
    from ..data.measure import measure_video

    cache.mkdir(parents=True, exist_ok=True)
    rows = manifest(root)
    order = [r for r in rows if not r["dataset"].startswith("GRID")] + [r for r in rows if r["dataset"].startswith("GRID")]
    for k, r in enumerate(order):
        f = cache / f"{r['clip_id']}.npz"
        if f.exists():
            continue
        began = time.time()
        track, audio = clip_signals(Path(root) / r["file"], lambda p: measure_video(p, cache=False))
        tmp = cache / f"{r['clip_id']}.tmp.npz"
        np.savez(tmp, lips=track.lips, opening=track.opening, width=track.width, present=track.face_present,
                 conf=track.confidence, audio=audio, speaker=r["speaker"], dataset=r["dataset"])
        os.replace(tmp, f)
        log(f"{k + 1}/{len(order)} {r['clip_id']}: {len(track.lips)} frames, {time.time() - began:.1f} s")
    return [cache / f"{r['clip_id']}.npz" for r in rows]


@dataclass
class RealClip:
    name: str
    speaker: str
    dataset: str
    audio: np.ndarray
    target: np.ndarray  # (hops, OUT_DIM) at 10 ms
    mask: np.ndarray  # (hops,)
    opening: np.ndarray  # (frames,) as tracked, 25 fps
    present: np.ndarray  # (frames,)


def real_clip(path: Path, mean_shape: np.ndarray) -> RealClip | None:
    from avcall.pipelines.face.lip_model import shape_measures

    with np.load(path) as z:
        lips, opening, width, present = z["lips"], z["opening"], z["width"], z["present"].astype(bool)
        audio, speaker, dataset = z["audio"].astype(np.float32), str(z["speaker"]), str(z["dataset"])
    if present.sum() < 25:
        return None
    shape = lips - np.median(lips[present], 0) + mean_shape  # the clip's own rest mouth taken out
    mean_width = float(shape_measures(mean_shape[None])[1][0])
    width = width - np.median(width[present]) + mean_width
    hops = len(audio) // 160
    target, mask = lip_targets(shape, opening, width, present, mean_shape, hops)
    return RealClip(path.stem, speaker, dataset, audio, target, mask, opening.astype(np.float32), present)


def load_clips(cache: Path) -> list[RealClip]:
    from avcall.pipelines.face.lip_model import LipModel

    mean = LipModel.load().mean.astype(np.float32)
    clips = [real_clip(p, mean) for p in sorted(Path(cache).glob("*.npz")) if not p.name.endswith(".tmp.npz")]
    return [c for c in clips if c is not None]


def split(clips: list[RealClip]) -> tuple[list[RealClip], list[RealClip]]:
    val = [c for c in clips if c.speaker in VAL_SPEAKERS]
    return [c for c in clips if c.speaker not in VAL_SPEAKERS], val


@dataclass
class RealConfig:
    tracks: Path
    out: Path
    steps: int = 3000
    batch: int = 24
    lr: float = 2e-3
    hidden: int = 128
    crop_hops: int = 300
    eval_every: int = 100
    seed: int = 0
    max_minutes: float = 0.0
    grid_share: float = 0.3  # of the crops, from the one GRID speaker; the rest speaker-balanced
    dropout_in: float = 0.1


def clip_opening_r(model, clip: RealClip) -> float | None:
    """Mouth-opening r of the net on a whole clip (clean voice, cold start) against the tracked opening."""
    from .train import predict

    pred = predict(model, clip.audio)[:, 80]
    n = min(len(pred), len(clip.opening))
    ok = clip.present[:n]
    a, b = clip.opening[:n][ok], pred[:n][ok]
    if ok.sum() < 10 or a.std() < 1e-6 or b.std() < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def val_score(model, val: list[RealClip]) -> float:
    """Mean over the validation speakers of their clips' mean r (each speaker counts once)."""
    model.eval()
    by: dict[str, list[float]] = {}
    for c in val:
        r = clip_opening_r(model, c)
        if r is not None:
            by.setdefault(c.speaker, []).append(r)
    model.train()
    return float(np.mean([np.mean(v) for v in by.values()])) if by else float("nan")


def kept_on_val(model, val: list[RealClip], best, best_file: Path, config: dict):
    """The evaluation of the recipes on real mouths: the validation speakers' mouth-opening r (`val_score`), the
    net that beats `best` (a models.training.Best) saved in `best_file` with its score and step."""
    import torch

    def evaluate(step: int) -> dict:
        score = val_score(model, val)
        row = {"val_opening_r": round(score, 4)}
        best.offer(score, row, lambda: torch.save(
            {"model": model.state_dict(), "metrics": {"val_speaker_opening_r": score, "step": step}, "config": config},
            best_file))
        return row

    return evaluate


def draw(clips: list[RealClip], cfg: RealConfig, rng: np.random.Generator, rooms: list[np.ndarray]):
    """A batch of crops: a speaker first (GRID s1 at grid_share, the others uniformly), then one of their
    clips by length, a random crop of it; the band means warmed on up to 2 s before it or cold."""
    import torch

    from avcall.pipelines.nets.voice_to_lips import BAND_MEAN_HOPS, voice_features
    from .train import degrade

    grid = [c for c in clips if c.dataset.startswith("GRID")]
    by: dict[str, list[RealClip]] = {}
    for c in clips:
        if not c.dataset.startswith("GRID"):
            by.setdefault(c.speaker, []).append(c)
    speakers = sorted(by)
    n = cfg.crop_hops
    feats, targets, masks = [], [], []
    for _ in range(cfg.batch):
        if grid and (not speakers or rng.random() < cfg.grid_share):
            pool = grid
        else:
            pool = by[speakers[int(rng.integers(len(speakers)))]]
        lengths = np.array([len(c.target) for c in pool], float)
        c = pool[int(rng.choice(len(pool), p=lengths / lengths.sum()))]
        hops = len(c.target)
        start = int(rng.integers(0, max(hops - n, 0) + 1))
        pre = min(start, int(rng.integers(0, BAND_MEAN_HOPS + 1)))
        audio = c.audio[(start - pre) * 160:(start + n) * 160]
        audio = np.concatenate([audio, np.zeros((pre + n) * 160 - len(audio), np.float32)])
        feats.append(voice_features(degrade(audio, rng, rooms))[pre:pre + n])
        target, mask = np.zeros((n, OUT_DIM), np.float32), np.zeros(n, np.float32)
        got = c.target[start:start + n]
        target[:len(got)], mask[:len(got)] = got, c.mask[start:start + n]
        targets.append(target)
        masks.append(mask)
    return tuple(torch.from_numpy(np.stack(x)) for x in (feats, targets, masks))


def loss_fn(pred, target, mask):
    """Squared error on the shape, ten times on the opening, plus (1 - r) of the opening within each crop: the
    net is judged on how the mouth moves with the voice, and squared error alone shrinks the motion."""
    import torch

    from .train import loss_fn as mse

    p, t, m = pred[:, LOOKAHEAD:, 80], target[:, :-LOOKAHEAD, 80], mask[:, :-LOOKAHEAD]
    w = m / m.sum(1, keepdim=True).clamp(min=1)
    pc = p - (p * w).sum(1, keepdim=True)
    tc = t - (t * w).sum(1, keepdim=True)
    cov = (pc * tc * w).sum(1)
    r = cov / torch.sqrt((pc ** 2 * w).sum(1) * (tc ** 2 * w).sum(1) + 1e-8)
    keep = (m.sum(1) > 50).float()
    corr = ((1 - r) * keep).sum() / keep.sum().clamp(min=1)
    return mse(pred, target, mask) + 0.05 * corr


def train_real(cfg: RealConfig, log=print) -> dict:
    import torch

    from ..training import Best, Loop, cosine, resume, train_loop
    from .model import VoiceToLips
    from .train import room_bank

    torch.manual_seed(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    train_clips, val = split(load_clips(cfg.tracks))
    log(f"{len(train_clips)} training clips ({len({c.speaker for c in train_clips})} speakers), "
        f"{len(val)} validation clips ({len({c.speaker for c in val})} speakers)")
    model = VoiceToLips(hidden=cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ckpt, best_file, best = cfg.out / "checkpoint.pt", cfg.out / "model.pt", Best(-1.0)

    def restore(state: dict) -> None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        best.value = state["best"]

    step = resume(ckpt, restore)
    rng = np.random.default_rng([cfg.seed, step])
    rooms = room_bank(np.random.default_rng(cfg.seed + 1))
    config = {k: str(v) for k, v in asdict(cfg).items()}

    def one_step(_: int) -> torch.Tensor:
        feats, target, mask = draw(train_clips, cfg, rng, rooms)
        if cfg.dropout_in:
            feats = feats * (torch.rand(feats.shape[0], 1, feats.shape[2]) > cfg.dropout_in).float()
        pred, _ = model(feats, model.initial_state(cfg.batch))
        return loss_fn(pred, target, mask)

    done = train_loop(one_step, opt, Loop(steps=cfg.steps, every=cfg.eval_every, checkpoint=ckpt, clip=5.0,
                                          max_minutes=cfg.max_minutes, log=cfg.out / "train.log", say=log, digits=5),
                      start=step, evaluate=kept_on_val(model, val, best, best_file, config),
                      state=lambda: {"model": model.state_dict(), "opt": opt.state_dict(), "best": best.value,
                                     "config": config},
                      lr=lambda step: cosine(cfg.lr, step, cfg.steps, floor=0.1))
    return {"step": done.step, "val_speaker_opening_r": best.value}


def calibrate_gain(model, clips: list[RealClip], most: float = 2.0) -> tuple[float, np.ndarray]:
    """The gain that gives the net's mouth-opening the spread of the real speakers' (squared error shrinks a
    regression's motion, and a mouth that barely moves is lost once drawn and seen), and the mean output it
    scales about, both over `clips`."""
    from .train import predict

    model.eval()
    ratios, outs = [], []
    for c in clips:
        pred = predict(model, c.audio)
        n = min(len(pred), len(c.opening))
        ok = c.present[:n]
        if ok.sum() > 25 and pred[:n][ok, 80].std() > 1e-6:
            ratios.append(c.opening[:n][ok].std() / pred[:n][ok, 80].std())
            outs.append(pred[:n][ok])
    gain = float(np.clip(np.median(ratios), 1.0, most)) if ratios else 1.0
    return gain, np.concatenate(outs).mean(0) if outs else np.zeros(OUT_DIM, np.float32)


def sources_seen(root: Path, clips: list[RealClip]) -> list[dict]:
    """The av_train sources (dataset, licence as the manifest states it, clips, minutes) behind `clips`."""
    names = {c.name for c in clips}
    by: dict[tuple[str, str], list[float]] = {}
    for r in manifest(root):
        if r["clip_id"] in names:
            by.setdefault((r["dataset"], r["licence"]), []).append(float(r["duration"]))
    return [{"dataset": d, "licence": lic, "clips": len(v), "minutes": round(sum(v) / 60, 2)}
            for (d, lic), v in sorted(by.items())]


def export_real(run: Path, out_dir: Path, root: Path, tracks: Path, metrics: dict | None = None,
                gain: float | None = None) -> dict:
    """talking_face.onnx from the run's best checkpoint, its opening's spread calibrated on the training
    speakers (`calibrate_gain`, folded into the output layer), parity checked; the manifest entry names the
    av_train sources and licences the net saw (training speakers, and the validation speakers it was stopped on)."""
    import torch

    from avcall.export.manifest import write_manifest_entry
    from .model import VoiceToLips
    from .train import WEIGHTS, export_onnx

    state = torch.load(Path(run) / "model.pt")
    config = state["config"]
    model = VoiceToLips(hidden=int(config["hidden"]))
    model.load_state_dict(state["model"])
    model.eval()
    train_clips, val = split(load_clips(tracks))
    found, centre = calibrate_gain(model, train_clips)
    gain = found if gain is None else gain
    with torch.no_grad():  # out' = centre + gain (out - centre)
        model.out.weight.mul_(gain)
        model.out.bias.mul_(gain).add_(torch.from_numpy((1 - gain) * centre.astype(np.float32)))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / WEIGHTS
    error, stream_error = export_onnx(model, path)
    credits = ["avcall voice-to-lips GRU (this repository, Apache-2.0)",
               "Trained on ../shared/data/av_train (real talking faces with their own voices; the tracker's lips "
               "as targets): GRID (research use; the Zenodo release cited as CC BY 4.0), LRS3/TED AVSE samples "
               "(CC BY-NC-ND), VoxCeleb2 (footage of its uploaders), HDTF (research use), CREMA-D (ODbL), public "
               "talks and demo inputs (third-party footage, research use). Research use only: see `training_data`."]
    entry = write_manifest_entry(
        path, recipe=f"avcall train talking-face --real {root} --tracks {tracks} --out {run} --steps "
        f"{config['steps']} --batch {config['batch']} --hidden {config['hidden']} --seed {config['seed']} --export",
        corpus={"real": str(root), "tracks": str(tracks), "train_clips": len(train_clips),
                "val_speakers": sorted({c.speaker for c in val})},
        metrics=(metrics or {}) | dict(state["metrics"]) | {"parity_max_abs": error, "streaming_max_abs": stream_error,
                                                           "opening_gain": round(gain, 4)},
        credits=credits, latency_ms=1000 * LOOKAHEAD * 160 / 16_000 + 25.0, manifest=out_dir / "manifest.json",
        extra={"arch": "VoiceToLips", "role": "voice -> lip features", "lookahead_ms": LOOKAHEAD * 10,
               "licence": "research use only (inherits its training data's terms)",
               "training_data": {"train": sources_seen(root, train_clips),
                                 "validation (early stopping)": sources_seen(root, val)}})
    return entry


def calibrate_onnx(src: Path, dst: Path, tracks: Path, most: float = 3.0) -> dict:
    """A copy of a voice-to-lips ONNX whose output is scaled about its mean, out' = c + g (out - c): g the
    median over av_train's training clips (never the validation speakers, never the dev clips) of the real
    opening's spread over the net's, at most `most`. A net trained on squared error moves the mouth a third as
    far as people do, and a mouth that barely moves is lost once drawn; Pearson r of its own output is unchanged.
    Returns {gain, median_ratio}."""
    import onnx
    from onnx import helper, numpy_helper

    from avcall.pipelines.runtime import create_session
    from avcall.pipelines.nets.voice_to_lips import voice_features

    sess = create_session(src, threads=1)
    shape = sess.get_inputs()[1].shape
    state = np.zeros((int(shape[0]), 1, int(shape[2])), np.float32)
    ratios, outs = [], []
    for c in split(load_clips(tracks))[0]:
        feats = voice_features(np.concatenate([c.audio, np.zeros(LOOKAHEAD * 160, np.float32)]))
        out = sess.run(None, {"features": feats[None], "state_in": state})[0][0, LOOKAHEAD:]
        rows = out[np.clip(np.arange(len(out) // 4) * 4 - 1, 0, None)]
        n = min(len(rows), len(c.opening))
        ok = c.present[:n]
        if ok.sum() > 25 and rows[:n][ok, 80].std() > 1e-6:
            ratios.append(c.opening[:n][ok].std() / rows[:n][ok, 80].std())
            outs.append(rows[:n][ok])
    if not ratios:
        raise ValueError(f"{tracks}: no training clip to calibrate on")
    gain = float(np.clip(np.median(ratios), 1.0, most))
    centre = np.concatenate(outs).mean(0).astype(np.float32)
    model = onnx.load(str(src))
    graph, raw = model.graph, "lips_uncalibrated"
    for node in graph.node:
        node.output[:] = [raw if o == "lips" else o for o in node.output]
        node.input[:] = [raw if i == "lips" else i for i in node.input]
    graph.initializer.extend([numpy_helper.from_array(centre, "gain_centre"),
                              numpy_helper.from_array(np.float32(gain), "gain")])
    graph.node.extend([helper.make_node("Sub", [raw, "gain_centre"], ["gain_dev"]),
                       helper.make_node("Mul", ["gain_dev", "gain"], ["gain_scaled"]),
                       helper.make_node("Add", ["gain_scaled", "gain_centre"], ["lips"])])
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return {"gain": round(gain, 4), "median_ratio": round(float(np.median(ratios)), 4), "clips": len(ratios)}


def run(args) -> dict:
    """`avcall train talking-face --real FOLDER`: track the clips, train, and export with --export."""
    from avcall.pipelines.runtime import weights_dir

    tracks = args.tracks or args.out / "tracks"
    log = (lambda _: None) if args.quiet else print
    track_clips(args.real, tracks, log=log)
    result = train_real(RealConfig(tracks=tracks, out=args.out, steps=args.steps, batch=args.batch,
                                   hidden=args.hidden, seed=args.seed, eval_every=args.ckpt_every,
                                   max_minutes=args.max_minutes, grid_share=args.grid_share), log=log)
    if args.export:
        export_real(args.out, weights_dir(), args.real, tracks)
    return result
