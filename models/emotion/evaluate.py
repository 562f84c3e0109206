"""`avcall eval emotion`: the shipped emotion nets and every fusion method on a labelled split.

There are no audio-visual emotion recordings here: faces and voices come from different people, so the fused
figures are on pairs of a face and a voice with the same label (each voice clip with five faces, each face with
five voice clips, drawn with a fixed seed); data with a `pair` column pairs each recording's own face and voice. Every method is scored on the same pairs. Conditions:
    clean          both as recorded
    noise5dB       the voice mixed with the corpus's generated noise at 5 dB over its speech (fixed seed)
    face_missing   the voice alone (clean)
    voice_missing  the face alone
`summary[condition][method]` = accuracy, uar, macro_f1 (and n); `items` has the single nets on every face
and every clip; confusion matrices go to <OUT stem>_confusion/ as PNG. With --clips, the live stage also runs
on the labelled clips of ../shared/data/emotion and the report lists what it said.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avcall.pipelines.errors import InputError
from avcall.pipelines.sinks.atomic import write_text_atomic

from .data import clip_windows, group_indices, load_audio, load_face, scores, speaker_means, speech_span, window_ends
from avcall.pipelines.nets.emotion import CLASSES
from .labels import read_labels

CONDITIONS = ("clean", "noise5dB", "face_missing", "voice_missing")
N = len(CLASSES)


def noisy(x: np.ndarray, rng: np.random.Generator, snr_db: float = 5.0) -> np.ndarray:
    """`x` with a generated corpus noise (not babble: it needs voices) at `snr_db` over its speech (the clips'
    leading and trailing silence does not count)."""
    from avcall.models.data.noise import NOISE_KINDS, make_noise

    kinds = [k for k in NOISE_KINDS if k != "babble"]
    noise = make_noise(kinds[int(rng.integers(len(kinds)))], len(x), rng).astype(np.float64)
    s, e = speech_span(x)
    speech_power = float(np.mean(np.square(x[s:e], dtype=np.float64)))
    gain = np.sqrt(speech_power / (max(float(np.mean(noise**2)), 1e-20) * 10 ** (snr_db / 10)))
    return (x + gain * noise).astype(np.float32)


def pairs(voice_keys: list[str], face_keys: list[str], seed: int, per_item: int = 5) -> list[tuple[int, int]]:
    """Each voice with `per_item` random faces of its partner key and each face with `per_item` random voices
    of its key (see Item.partner_key: the same recording in audio-visual data, else the same label); keys that
    one modality lacks are left out. Every item counts, and the partners an item meets are averaged over
    rather than left to one draw."""
    rng = np.random.default_rng(seed)
    voices_by, faces_by = group_indices(voice_keys), group_indices(face_keys)
    out = []
    for i, k in enumerate(voice_keys):
        faces = faces_by.get(k, [])
        out += [(i, faces[f]) for f in rng.integers(len(faces), size=per_item)] if faces else []
    for j, k in enumerate(face_keys):
        voices = voices_by.get(k, [])
        out += [(voices[v], j) for v in rng.integers(len(voices), size=per_item)] if voices else []
    return out


def evaluate_emotion(data: Path, split: str, out: Path, *, seed: int = 0, fallback: bool = True,
                     plots: bool = True, progress: bool = True) -> dict:
    from avcall.pipelines.nets.emotion_features import face_input, normalise
    from avcall.pipelines.nets.emotion import METHODS, EmotionModels

    items = [i for i in read_labels(data) if i.split == split]
    faces = [i for i in items if i.modality == "face_image"]
    voices = [i for i in items if i.modality == "speech"]
    if not faces or not voices:
        raise InputError(f"{data}: split {split!r} needs labelled faces and speech")
    models = EmotionModels()
    rng = np.random.default_rng(seed)
    face_out = [models.face(face_input(load_face(i.path))[None]) for i in tqdm(faces, desc="faces", disable=not progress)]
    windows: dict[str, list] = {"clean": [], "noise5dB": []}
    for i in tqdm(voices, desc="voices", disable=not progress):
        x = load_audio(i.path)
        windows["clean"].append(clip_windows(x))
        windows["noise5dB"].append(clip_windows(noisy(x, rng), window_ends(x)))  # the same windows as clean
    # each speaker's voice normalised as a call's SpeakerNorm would after hearing them a while (in each
    # condition: the noisy voice's own mean in noise)
    speakers = [i.speaker for i in voices]
    voice_out = {}
    for condition, ws in windows.items():
        means = speaker_means(ws, speakers)
        voice_out[condition] = [models.voice(np.stack([normalise(w, means.get(s)) for w in clip]))
                                for clip, s in zip(ws, speakers)]
    yv, yf = np.array([i.label for i in voices]), np.array([i.label for i in faces])
    plan = pairs([i.partner_key for i in voices], [i.partner_key for i in faces], seed)
    y = np.array([yv[a] for a, _ in plan])
    summary: dict = {}
    for condition in CONDITIONS:
        summary[condition] = {}
        for method in METHODS:
            if (condition == "face_missing" and method == "face") or (condition == "voice_missing" and method == "voice"):
                continue
            vo = voice_out["noise5dB" if condition == "noise5dB" else "clean"]
            pred = np.array([np.argmax(models.fuse(method, None if condition == "voice_missing" else vo[a],
                                                   None if condition == "face_missing" else face_out[b],
                                                   fallback=fallback)) for a, b in plan])
            summary[condition][method] = scores(y, pred)
    single = {"face": scores(yf, np.array([np.argmax(p[0]) for p in face_out])),
              "voice_clean": scores(yv, np.array([np.argmax(p[0].mean(0)) for p in voice_out["clean"]])),
              "voice_noise5dB": scores(yv, np.array([np.argmax(p[0].mean(0)) for p in voice_out["noise5dB"]]))}
    report = {
        "data": str(data), "split": split, "seed": seed, "pairs": len(plan), "faces": len(faces),
        "voice_clips": len(voices), "fallback_when_missing": fallback, "shipped_fusion": models.shipped_fusion,
        "note": ("faces and voices paired by their recording (the data's pair column)" if any(i.pair for i in items)
                 else "faces and voices are from different people, paired by label: fused figures are on such pairs"),
        "summary": {c: {m: {k: v for k, v in s.items() if k != "confusion"} for m, s in d.items()}
                    for c, d in summary.items()},
        "items": {k: {kk: vv for kk, vv in v.items() if kk != "confusion"} for k, v in single.items()},
        "confusion": {c: {m: s["confusion"] for m, s in d.items()} for c, d in summary.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(report, indent=1) + "\n")
    if plots:
        plot_confusions(report["confusion"], out.with_name(f"{out.stem}_confusion"))
    return report


def plot_confusions(confusion: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for condition, methods in confusion.items():
        fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.4))
        for ax, (method, cm) in zip(np.atleast_1d(axes), methods.items()):
            cm = np.array(cm, float)
            ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), vmin=0, vmax=1, cmap="Blues")
            ax.set_title(method, fontsize=9)
            ax.set_xticks(range(N), [c[:3] for c in CLASSES], fontsize=6, rotation=90)
            ax.set_yticks(range(N), [c[:3] for c in CLASSES], fontsize=6)
            for (r, c), v in np.ndenumerate(cm):
                if v:
                    ax.text(c, r, int(v), ha="center", va="center", fontsize=5)
        fig.suptitle(f"{condition} (rows: truth, columns: predicted)", fontsize=9)
        fig.tight_layout()
        fig.savefig(folder / f"{condition}.png", dpi=90)
        plt.close(fig)


def format_table(summary: dict) -> str:
    methods = ["face", "voice", "concat", "avef", "tfn", "late"]
    lines = ["| condition | " + " | ".join(methods) + " |", "| --- |" + " --- |" * len(methods)]
    for condition, d in summary.items():
        cells = [f"{d[m]['uar']:.3f}" if m in d else "–" for m in methods]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
