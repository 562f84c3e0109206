"""The shipped voice-to-lips net fine-tuned on real mouths (issue 23, point 1): `avcall train
talking-face-finetune`.

Starts from the shipped `talking_face.onnx` (its weights read back into torch; the calibration nodes left
out), and trains at a low learning rate on batches that mix the corpus (`train.draw`: phoneme-timed lips with
their voices, for phonetic coverage) with av_train's real talking faces (`real.draw`: each speaker's own
voice degraded as calls hear it, the tracker's lips as targets, speaker-balanced with GRID's one speaker at
`grid_share`). The real targets are smoothed over `smooth` video frames (the tracker's frame-to-frame jitter
is not in the voice). Kept: the checkpoint best on the speaker-disjoint validation speakers
(`real.VAL_SPEAKERS`, whole-clip mouth-opening r, each speaker once); step 0 is the shipped net. `--export
DIR` writes DIR/talking_face.onnx (same interface: features, state_in -> lips, state_out; parity and
streaming checked), its output gain calibrated on av_train's training clips as the shipped one was.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..training import Best, Loop, cosine, train_loop
from .model import VoiceToLips


def load_shipped(path: Path) -> VoiceToLips:
    """The shipped ONNX's weights in a torch VoiceToLips (the GRU's gates from ONNX's z, r, h order to torch's
    r, z, n); the calibration nodes after the output layer are not part of it."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    w = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    grus = [n for n in model.graph.node if n.op_type == "GRU"]
    matmuls = {n.output[0]: n for n in model.graph.node if n.op_type == "MatMul"}
    inp_w = next(w[i] for n in matmuls.values() if n.output[0].startswith("/inp/") for i in n.input if i in w)
    out_w = next(w[i] for n in matmuls.values() if n.output[0].startswith("/out/") for i in n.input if i in w)
    prelu = next(w[i] for n in model.graph.node if n.op_type == "PRelu" for i in n.input if i in w)
    net = VoiceToLips(hidden=int(inp_w.shape[1]), layers=len(grus))
    h = net.hidden

    def gates(x: np.ndarray) -> np.ndarray:  # ONNX z, r, h -> torch r, z, n
        return np.concatenate([x[h:2 * h], x[:h], x[2 * h:]], 0)

    state = {"norm.weight": w["norm.weight"], "norm.bias": w["norm.bias"], "inp.0.weight": inp_w.T,
             "inp.0.bias": w["inp.0.bias"], "inp.1.weight": prelu.reshape(-1), "out.weight": out_w.T,
             "out.bias": w["out.bias"]}
    for layer, node in enumerate(grus):
        W, R, B = (w[node.input[k]][0] for k in (1, 2, 3))
        state[f"gru.weight_ih_l{layer}"] = gates(W)
        state[f"gru.weight_hh_l{layer}"] = gates(R)
        state[f"gru.bias_ih_l{layer}"] = gates(B[:3 * h])
        state[f"gru.bias_hh_l{layer}"] = gates(B[3 * h:])
    state = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in state.items()}
    state |= {k: v for k, v in net.state_dict().items() if k.startswith("visemes.")}
    net.load_state_dict(state)
    return net


@dataclass
class FinetuneConfig:
    tracks: Path
    out: Path
    corpus: Path | None = None
    steps: int = 1500
    batch: int = 24  # crops per step: real_share of them from av_train, the rest from the corpus
    real_share: float = 0.5
    grid_share: float = 0.3
    lr: float = 2e-4
    crop_hops: int = 300
    smooth: int = 3  # video frames of the real targets' moving average (1: as tracked)
    real_corr: float = 0.05  # weight of (1 - r) of the opening within each real crop
    dropout_in: float = 0.1
    eval_every: int = 100
    seed: int = 0
    max_minutes: float = 0.0


def smoothed(clips, frames: int):
    """The real targets averaged over `frames` video frames (centred; the mask's holes left out)."""
    if frames <= 1:
        return clips
    k = 4 * frames  # the targets are per 10 ms hop, 4 a video frame
    kernel = np.ones(k, np.float32)
    for c in clips:
        m = c.mask.astype(np.float32)
        num = np.stack([np.convolve(c.target[:, j] * m, kernel, "same") for j in range(c.target.shape[1])], 1)
        den = np.convolve(m, kernel, "same")[:, None]
        c.target = np.where(den > 0, num / np.maximum(den, 1e-6), c.target).astype(np.float32)
    return clips


def finetune(cfg: FinetuneConfig, shipped: Path, log=print) -> dict:
    from .real import RealConfig, draw as draw_real, kept_on_val, load_clips, loss_fn as real_loss, split
    from .train import TalkConfig, corpus_items, draw as draw_corpus, loss_fn, room_bank

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    train_clips, val = split(load_clips(cfg.tracks))
    train_clips = smoothed(train_clips, cfg.smooth)
    items = corpus_items(cfg.corpus) if cfg.corpus else []
    n_real = int(round(cfg.batch * cfg.real_share)) if items else cfg.batch
    log(f"real: {len(train_clips)} training clips ({len({c.speaker for c in train_clips})} speakers), {len(val)} "
        f"validation clips ({len({c.speaker for c in val})} speakers); corpus: {len(items)} items; "
        f"{n_real} real + {cfg.batch - n_real} corpus crops a step")
    real_cfg = RealConfig(tracks=cfg.tracks, out=cfg.out, batch=n_real, crop_hops=cfg.crop_hops,
                          grid_share=cfg.grid_share)
    corpus_cfg = TalkConfig(corpus=cfg.corpus, out=cfg.out, batch=cfg.batch - n_real, crop_hops=cfg.crop_hops)
    model = load_shipped(shipped)
    params = [p for n, p in model.named_parameters() if not n.startswith("visemes.")]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    rooms = room_bank(np.random.default_rng(cfg.seed + 1))
    config = {k: str(v) for k, v in asdict(cfg).items()}
    best_file, best = cfg.out / "model.pt", Best(-2.0)

    def one_step(_: int) -> torch.Tensor:
        feats, target, mask = draw_real(train_clips, real_cfg, rng, rooms)
        parts = [(feats, target, mask, True)]
        if items and cfg.batch > n_real:
            f2, t2, m2, _ = draw_corpus(items, corpus_cfg, rng, rooms)
            parts.append((f2, t2, m2, False))
        total = 0.0
        for feats, target, mask, real in parts:
            if cfg.dropout_in:
                feats = feats * (torch.rand(feats.shape[0], 1, feats.shape[2]) > cfg.dropout_in).float()
            pred, _ = model(feats, model.initial_state(len(feats)))
            mse = loss_fn(pred, target, mask)
            # real.loss_fn is the squared error + 0.05 (1 - r): reweighted to real_corr
            total = total + (mse + cfg.real_corr / 0.05 * (real_loss(pred, target, mask) - mse) if real else mse)
        return total

    done = train_loop(one_step, opt, Loop(steps=cfg.steps, every=cfg.eval_every, clip=5.0, max_minutes=cfg.max_minutes,
                                          log=cfg.out / "train.log", say=log, digits=5, eval_first=True),
                      evaluate=kept_on_val(model, val, best, best_file, config),
                      lr=lambda step: cosine(cfg.lr, step, cfg.steps))
    return {"step": done.step, "val_speaker_opening_r": best.value}


def interpolated(state: dict, shipped: Path, alpha: float) -> dict:
    """(1 - alpha) shipped + alpha fine-tuned, weight by weight (the fine-tuned net started from the shipped
    one, so the two lie in one basin; alpha is chosen on the validation speakers, `choose_alpha`)."""
    base = load_shipped(shipped).state_dict()
    return {k: (1 - alpha) * base[k] + alpha * v for k, v in state.items()}


def choose_alpha(run: Path, tracks: Path, shipped: Path, alphas=(0.25, 0.5, 0.75, 1.0), log=print) -> float:
    """The interpolation best on the speaker-disjoint validation speakers (never the dev clips)."""
    from .real import load_clips, split, val_score

    _, val = split(load_clips(tracks))
    state = torch.load(Path(run) / "model.pt")["model"]
    scores = {}
    for a in alphas:
        model = VoiceToLips(hidden=int(state["out.weight"].shape[1]))
        model.load_state_dict(interpolated(state, shipped, a))
        scores[a] = val_score(model, val)
    log(json.dumps({"val_opening_r_by_alpha": {str(a): round(v, 4) for a, v in scores.items()}}))
    return max(scores, key=scores.get)


def export(run: Path, out_dir: Path, tracks: Path, most: float = 2.0, alpha: float = 1.0,
           shipped: Path | None = None) -> dict:
    """DIR/talking_face.onnx from the run's best checkpoint (interpolated with the shipped net by `alpha`
    where that is below 1; parity and streaming checked), then its output scaled about its mean by the real
    opening's spread over its own (median over av_train's training clips, at most `most`), as the shipped net
    was calibrated."""
    from .real import calibrate_onnx
    from .train import WEIGHTS, export_onnx

    state = torch.load(Path(run) / "model.pt")
    model = VoiceToLips(hidden=int(state["model"]["out.weight"].shape[1]))
    model.load_state_dict(state["model"] if alpha >= 1 else interpolated(state["model"], shipped, alpha))
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "talking_face_uncalibrated.onnx"
    error, stream_error = export_onnx(model, raw)
    gain = calibrate_onnx(raw, out_dir / WEIGHTS, tracks, most=most)
    return {"parity_max_abs": error, "streaming_max_abs": stream_error, "calibration": gain, "alpha": alpha,
            "metrics": state["metrics"], "config": state["config"]}


def ship(run: Path, candidate: Path, exported: dict, tracks: Path, root: Path, dev: dict) -> dict:
    """Copy DIR/talking_face.onnx into the shipped weights with its manifest entry: recipe, corpus, the
    av_train sources and licences seen (training, validation), the calibration, the validation figure and the
    dev-clip figures before and after (`dev`, from `avcall eval talking-face` with the candidate)."""
    import shutil

    from avcall.export.manifest import REAL_VOICE_CREDITS, corpus_info, write_manifest_entry
    from avcall.pipelines.runtime import weights_dir
    from avcall.pipelines.nets.voice_to_lips import LOOKAHEAD

    from .real import load_clips, sources_seen, split
    from .train import WEIGHTS

    config = exported["config"]
    train_clips, val = split(load_clips(tracks))
    manifest = weights_dir() / "manifest.json"
    before = json.loads(manifest.read_text())["models"].get(WEIGHTS, {})
    corpus = corpus_info(config["corpus"]) if config.get("corpus") not in (None, "None") else {}
    dst = weights_dir() / WEIGHTS
    shutil.copyfile(Path(candidate) / WEIGHTS, dst)
    credits = ["avcall voice-to-lips GRU (this repository, Apache-2.0), fine-tuned from the corpus-trained net",
               "Corpus voices, lips and noise: the corpus named under `corpus` (avcall corpus make)",
               "Real mouths: ../shared/data/av_train (the tracker's lips with their own voices): GRID (research use; "
               "the Zenodo release cited as CC BY 4.0), LRS3/TED AVSE samples (CC BY-NC-ND), VoxCeleb2 (footage of "
               "its uploaders), HDTF (research use), CREMA-D (ODbL), public talks and demo inputs (third-party "
               "footage). Research use only: see `training_data`."] + REAL_VOICE_CREDITS
    alpha = exported.get("alpha", 1.0)
    return write_manifest_entry(
        dst, recipe=f"avcall train talking-face-finetune --tracks {config['tracks']} --corpus "
        f"{config['corpus']} --out {config['out']} --steps {config['steps']} --batch {config['batch']} --lr "
        f"{config['lr']} --real-share {config['real_share']} --grid-share {config['grid_share']} --smooth "
        f"{config['smooth']} --real-corr {config['real_corr']} --seed {config['seed']} --export DIR --alpha {alpha}",
        corpus=corpus, metrics={"evaluated_by": "avcall eval talking-face --out bench/talking_face.json",
                                "validation": exported["metrics"], "dev_clips_before_after": dev,
                                "parity_max_abs": exported["parity_max_abs"],
                                "streaming_max_abs": exported["streaming_max_abs"]},
        credits=credits, latency_ms=1000 * LOOKAHEAD * 160 / 16_000 + 25.0, manifest=manifest,
        extra={"arch": "VoiceToLips", "role": "voice -> lip features", "lookahead_ms": LOOKAHEAD * 10,
               "calibration": exported["calibration"] | {"what": "out' = c + g (out - c): the real opening's "
                                                         "spread over the net's, median over av_train's training clips"},
               "interpolation": {"alpha": alpha, "what": "(1 - alpha) the net it was fine-tuned from + alpha the "
                                 "fine-tuned one, alpha chosen on the validation speakers"},
               "licence": "research use only (inherits its training data's terms)",
               "training_data": {"train": sources_seen(root, train_clips),
                                 "validation (early stopping)": sources_seen(root, val)},
               "fine_tuned_from": before.get("fine_tuned_from") or {k: before.get(k) for k in
                                                                    ("sha256", "recipe", "corpus", "exported")}})


def run(args) -> dict:
    """`avcall train talking-face-finetune` (models/talking_face/train_args.add_finetune_arguments)."""
    from avcall.pipelines.runtime import require_weights

    from .train import WEIGHTS

    torch.set_num_threads(1)
    result = {}
    if args.steps > 0:
        result["finetune"] = finetune(FinetuneConfig(
            tracks=args.tracks, out=args.out, corpus=args.corpus, steps=args.steps, batch=args.batch,
            real_share=args.real_share, grid_share=args.grid_share, lr=args.lr, smooth=args.smooth,
            real_corr=args.real_corr, eval_every=args.eval_every, seed=args.seed, max_minutes=args.max_minutes),
            require_weights(WEIGHTS), log=lambda s: print(s, flush=True))
    if args.export:
        shipped = require_weights(WEIGHTS)
        alpha = choose_alpha(args.out, args.tracks, shipped) if args.alpha == "val" else float(args.alpha)
        result["export"] = export(args.out, args.export, args.tracks, args.gain_most, alpha, shipped)
    return result
