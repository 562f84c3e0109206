"""`avcall train lip-gate`: the lip gate's scorer (pipelines/lip_gate.py), fitted on real faces with their voices.

Data: the `turns` condition (models/data/turns.py) built from the clips of ../shared/data/av_train (the training
folder: real talking faces with their own voices; another person's speech from `speech_train`, a generated
noise under it), and each clip in a generated noise at 0, 5 or 10 dB (the face talks throughout: the gate
must not take a noisy voice for another); never from the evaluation folders (talking_faces/, speech/, noise/).
Per 10 ms hop the gate's own features (pipelines/lip_gate.FEATURES, computed by the runtime code hop by hop, the
lips as they come) and a label:
the target talks alone (1) or the other voice alone (0); the rest is left out.

Model: a logistic regression over the standardised features, the two classes weighed equally, an L2 penalty,
fitted by L-BFGS (scipy), in two stages: the feature "voice_like_user" needs a scorer to enrol the user's voice
(pipelines/lip_gate.VoiceProfile), so a first fit without it drives the enrolment for the second. No torch: a
weight, a mean and a scale per feature, written to pipelines/lip_gate.json with what it saw and how well it
separates the two on its own data and on a speaker-disjoint part held out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from avcall.pipelines.errors import InputError
from avcall.pipelines.frames import HOP_SAMPLES
from avcall.pipelines.lip_gate import FEATURES, WEIGHTS, GateDecision, GateScorer, SyncEvidence

from ..data.shared_data import shared_data_dir
from ..data.turns import TurnsExample, build, recognised_words

L2 = 1e-3
GRID_CLIPS = 40  # of GRID speaker s1's 499: the other speakers are few, GRID would outweigh them
OTHER_UTTERANCES = 60  # of speech_train: the other person's voices
NOISES = ("pink", "babble", "hum", "keyboard")  # generated (noise/ is for evaluation only)
NOISY_SNRS = (0.0, 5.0, 10.0)  # the face talking in noise, no other voice: the target's hops only


class _Unfitted:
    """The scorer's place while the first features are gathered (its answer steers the state and what the voice
    profile enrols, nothing else: with 0.5 nothing is enrolled)."""

    def __call__(self, x) -> float:
        return 0.5


def features(ex: TurnsExample, judge, scorer=None) -> tuple[np.ndarray, np.ndarray]:
    """(hops, FEATURES) as the gate computes them on the example's mixture, and the labels (1, 0, -1). `scorer`
    steers what the gate enrols as the user's voice (`VoiceProfile`); without one nothing is enrolled."""
    gate = GateDecision(SyncEvidence(judge), scorer or _Unfitted())
    x, frames = ex.mixture, ex.lips.frames()
    rows, k = [], 0
    n = len(x) // HOP_SAMPLES
    for h in range(n):
        t = h * HOP_SAMPLES / 16000
        while k < len(frames) and frames[k].pts <= t:
            gate.push_lips(frames[k])
            k += 1
        gate.gain(x[h * HOP_SAMPLES:(h + 1) * HOP_SAMPLES], t)
        rows.append(gate.features or [np.nan] * len(FEATURES))
    y = np.full(n, -1)
    y[ex.target_only[:n]] = 1
    y[ex.other_only[:n]] = 0
    return np.array(rows, np.float64), y


def noisy_example(audio: np.ndarray, track, audio_offset: float, noise: np.ndarray, snr_db: float) -> TurnsExample:
    """The clip as recorded in a noise at `snr_db`, labelled as `turns` labels its hops: the face's own speech
    (its loud hops), no other voice."""
    from ..data.turns import active_rms, loud_hops

    noise = noise * (active_rms(audio) * 10 ** (-snr_db / 20) / max(float(np.sqrt(np.mean(noise ** 2))), 1e-9))
    n = len(audio) // HOP_SAMPLES
    lips = track if abs(audio_offset) < 1e-3 else _shifted(track, audio_offset)
    return TurnsExample(audio, np.zeros_like(audio), noise.astype(np.float32), lips, np.zeros(n, bool),
                        loud_hops(audio)[:n], [], source=f"noise at {snr_db:g} dB")


def _shifted(track, audio_offset: float):
    """The track on the audio's clock (frame i at i / fps)."""
    idx = np.clip(np.round(np.arange(len(track)) + audio_offset * track.fps).astype(int), 0, len(track) - 1)
    return track.take(idx)


def training_clips(data: Path, grid: int = GRID_CLIPS) -> list[Path]:
    """Every av_train clip of the other speakers, then `grid` of GRID's one speaker."""
    clips = sorted((data / "av_train" / "clips").glob("*.mkv"))
    return [p for p in clips if not p.name.startswith("grid")] + [p for p in clips if p.name.startswith("grid")][
        :grid]


def speaker(clip: Path) -> str:
    """The clip's speaker as the file name gives it (source and person)."""
    return clip.stem.split("__")[0] + ("" if clip.name.startswith(("grid", "cremad")) else clip.stem.split("_")[-1])


def fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, scale, weights, bias) of the logistic model."""
    from scipy.optimize import minimize

    z = GateScorer.transform(x)
    mean, scale = z.mean(0), z.std(0) + 1e-6
    z = np.c_[(z - mean) / scale, np.ones(len(z))]
    w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))

    def loss(b):
        p = 1 / (1 + np.exp(-(z @ b)))
        grad = z.T @ (w * (p - y)) / len(y) + 2 * L2 * np.r_[b[:-1], 0]
        value = -np.mean(w * (y * np.log(p + 1e-9) + (1 - y) * np.log(1 - p + 1e-9))) + L2 * np.sum(b[:-1] ** 2)
        return value, grad

    b = minimize(loss, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B").x
    return mean, scale, b[:-1], float(b[-1])


def auc(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve: the chance a target hop scores above an other-voice hop."""
    order = np.argsort(p)
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    pos = y == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def run(args) -> dict:
    import soundfile as sf

    from avcall.models.data.measure import measure_video
    from avcall.models.data.noise import make_noise
    from avcall.models.data.tts import to_16k
    from avcall.pipelines.nets.sync_judge import SyncJudge

    data = Path(args.data) if args.data else shared_data_dir()
    if data is None or not (data / "av_train").is_dir():
        raise InputError("avcall train lip-gate: needs ../shared/data/av_train beside the checkout (or --data DIR "
                         "with av_train/clips/, speech_train/)")
    def read(path: Path) -> np.ndarray:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        return to_16k(audio.mean(axis=1), rate)

    others = [read(p) for p in sorted((data / "speech_train").rglob("*.flac"))[:OTHER_UTTERANCES]]
    rng = np.random.default_rng(args.seed)
    judge = SyncJudge()
    clips = training_clips(data)[:args.clips or None]
    examples, began = [], time.time()
    for i, clip in enumerate(clips):
        m = measure_video(clip)
        audio = np.asarray(m.audio, np.float32)
        ex = build(audio, m.track, float(m.audio_offset), recognised_words(m.audio), others,
                   make_noise(NOISES[i % len(NOISES)], 20 * 16000, rng, others), args.seed, clip.name)
        # and the face talking in loud noise (no other voice): the gate must not take the target for another
        noisy = noisy_example(audio, m.track, float(m.audio_offset), make_noise(NOISES[(i + 1) % len(NOISES)],
                              len(audio), rng, others), NOISY_SNRS[i % len(NOISY_SNRS)])
        examples += [(speaker(clip), e) for e in (ex, noisy) if e is not None]
        print(f"lip-gate: {i + 1}/{len(clips)} {clip.name} ({time.time() - began:.0f} s)", file=sys.stderr, flush=True)

    def gather(scorer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xs, ys, who = [], [], []
        for k, (person, example) in enumerate(examples):
            x, y = features(example, judge, scorer)
            keep = (y >= 0) & np.isfinite(x).all(1)
            xs.append(x[keep])
            ys.append(y[keep])
            who += [person] * int(keep.sum())
            if k % 20 == 0:
                print(f"lip-gate: features {k + 1}/{len(examples)} ({time.time() - began:.0f} s)", file=sys.stderr,
                      flush=True)
        return np.concatenate(xs), np.concatenate(ys), np.array(who)

    # two stages: the voice's likeness to the user needs a scorer that enrols the user's voice; the first one,
    # fitted without that feature, enrols it for the second
    n = FEATURES.index("voice_like_user")
    x, y, who = gather(None)
    first = fit(x[:, :n], y)
    stage1 = GateScorer(spec={"features": list(FEATURES[:n]), "mean": first[0], "scale": first[1],
                              "weights": first[2], "bias": first[3]})
    x, y, who = gather(stage1)
    # a speaker-disjoint check: every fifth speaker held out
    speakers = sorted(set(who))
    held = np.isin(who, speakers[::5])
    mean, scale, weights, bias = fit(x[~held], y[~held])
    scorer_of = lambda z: ((GateScorer.transform(z) - mean) / scale) @ weights + bias  # noqa: E731
    held_auc = auc(scorer_of(x[held]), y[held]) if held.any() and len(set(y[held])) == 2 else None
    mean, scale, weights, bias = fit(x, y)  # then on everything
    spec = {"features": list(FEATURES), "mean": mean.round(6).tolist(), "scale": scale.round(6).tolist(),
            "weights": weights.round(6).tolist(), "bias": round(bias, 6),
            "recipe": "avcall train lip-gate (models/lip_gate/train.py): logistic regression, balanced classes, "
                      f"L2 {L2}, L-BFGS, two stages (the first enrols the user's voice for the second); seed "
                      f"{args.seed}",
            "data_seen": {"clips": [c.name for c in clips],
                          "source": "../shared/data/av_train in the turns condition and in noise at "
                                    f"{', '.join(f'{x:g}' for x in NOISY_SNRS)} dB; other voices from speech_train; "
                                    "generated noises (models/data/noise.py)",
                          "hops": int(len(y)), "target_hops": int(y.sum()), "speakers": len(speakers)},
            "metrics": {"train_auc": round(auc(scorer_of(x), y), 4),
                        "held_out_speakers_auc": None if held_auc is None else round(held_auc, 4),
                        "held_out_speakers": speakers[::5]},
            "licence": "av_train is for research use (see ../shared/data/av_train/README.md): so is this fit",
            "commit": _commit()}
    out = Path(args.out) if args.out else WEIGHTS
    out.write_text(json.dumps(spec, indent=1) + "\n")
    return {"out": str(out), **spec["metrics"], "hops": spec["data_seen"]["hops"]}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def add_arguments(p) -> None:
    p.add_argument("--data", type=Path, help="folder laid out like ../shared/data (default: it)")
    p.add_argument("--out", type=Path, help=f"where to write the scorer (default {WEIGHTS.name} beside the gate)")
    p.add_argument("--clips", type=int, help="only the first N training clips (a quick look)")
    p.add_argument("--seed", type=int, default=0)
