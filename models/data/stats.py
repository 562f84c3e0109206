"""`avcall corpus stats`: what a corpus holds and how real it is, printed and written as JSON."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from ...pipelines.frames import SAMPLE_RATE
from .example import CHANNELS, load_lip_track
from avcall.pipelines.face.lip_model import LipModel, shape_measures

SNR_BINS = (-5, 0, 5, 10, 15, 20)


def _hist(values: list[float], edges: tuple[float, ...]) -> dict[str, int]:
    counts, _ = np.histogram(values, bins=list(edges))
    return {f"{a}..{b}": int(c) for a, b, c in zip(edges[:-1], edges[1:], counts)}


def envelope_at_frames(audio: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Log energy of the audio over each video frame's interval."""
    hop = SAMPLE_RATE / fps
    out = np.empty(n_frames)
    for i in range(n_frames):
        seg = audio[int(i * hop):int((i + 1) * hop)]
        out[i] = 10 * np.log10(np.mean(seg.astype(np.float64) ** 2) + 1e-9) if len(seg) else -90.0
    return out


def _r(a: np.ndarray, b: np.ndarray) -> float | None:
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and np.std(a) > 0 and np.std(b) > 0 else None


def corpus_stats(corpus: Path, realism: bool = True, round_trip_videos: int = 8,
                 log: Callable[[str], None] = lambda s: None) -> dict:
    metas = [json.loads(p.read_text()) for p in sorted((corpus / "examples").glob("*.json"))]
    if not metas:
        raise FileNotFoundError(f"{corpus}: no examples (expected examples/*.json from `avcall corpus make`)")
    target_min: dict[str, float] = defaultdict(float)
    talker_min: dict[str, float] = defaultdict(float)
    voice_min: dict[str, float] = defaultdict(float)
    real_speakers, snrs, sirs, kinds, rs = set(), [], [], Counter(), []
    missing_examples, missing_frames, frames, reverb, timing_methods = 0, 0, 0, 0, Counter()
    for m in metas:
        minutes = m["seconds"] / 60
        t = m["target"]
        target_min[t["source"]] += minutes
        voice_min[t["voice"]] += minutes
        timing_methods[m["timing"]["method"] or t.get("timing_method", "")] += 1
        if t["source"] == "real":
            real_speakers.add(t["voice"])
        if m.get("interferer"):
            talker_min[m["interferer"]["source"]] += minutes
            sirs.append(m["interferer"]["sir_db"])
        if m.get("noise"):
            snrs.append(m["noise"]["snr_db"])
            for kind in m["noise"]["kind"].split("+"):  # a layered noise counts for each of its kinds
                kinds[kind] += 1
        reverb += m.get("room") is not None
        lips = load_lip_track(corpus / "examples" / f"{m['name']}.lips.npz")
        missing = int((~lips.face_present).sum())
        missing_examples += missing > 0
        missing_frames += missing
        frames += len(lips)
        dry = sf.read(corpus / "examples" / f"{m['name']}.flac", dtype="float32")[0][:, CHANNELS.index("target_dry")]
        env = envelope_at_frames(dry, len(lips), lips.fps)
        r = _r(lips.opening[lips.face_present], env[lips.face_present])
        if r is not None:
            rs.append(r)
    n = len(metas)
    minutes = sum(m["seconds"] for m in metas) / 60
    stats = {
        "corpus": str(corpus), "examples": n, "minutes": round(minutes, 2), "hours": round(minutes / 60, 3),
        "voices": len(voice_min),
        "tts_voices": sorted(v for v in voice_min if not v.startswith("real:")),
        "target_minutes_by_source": {k: round(v, 2) for k, v in sorted(target_min.items())},
        "interferer_minutes_by_source": {k: round(v, 2) for k, v in sorted(talker_min.items())},
        "real_target_speakers": len(real_speakers),
        "real_target_share": round(target_min.get("real", 0) / max(minutes, 1e-9), 3),
        "real_interferer_share": round(talker_min.get("real", 0) / max(sum(talker_min.values()), 1e-9), 3),
        "share_with_competing_talker": round(len(sirs) / n, 3),
        "share_with_noise": round(len(snrs) / n, 3),
        "share_reverberant": round(reverb / n, 3),
        "share_with_missing_face": round(missing_examples / n, 3),
        "missing_face_frame_share": round(missing_frames / max(frames, 1), 4),
        "snr_db_histogram": _hist(snrs, SNR_BINS),
        "sir_db_histogram": _hist(sirs, (0, 1, 2, 3, 4, 5)),
        "noise_kinds": dict(sorted(kinds.items())),
        "timing_methods": dict(sorted(timing_methods.items())),
        "lip_audio_r_mean": round(float(np.mean(rs)), 3) if rs else None,
        "lip_audio_r_note": "per example, Pearson r of the lip track's opening and the clean target's log "
                            "energy per video frame; the same measure gives 0.26 on the real clips",
    }
    if realism:
        stats["realism"] = realism_report(corpus, round_trip_videos, log)
    return stats


def realism_report(corpus: Path, max_videos: int, log: Callable[[str], None]) -> dict:
    """How well the corpus's lips match reality: the lip model on the real transcribed clips, and the
    rendered videos run back through the tracker."""
    from avcall.models.data.shared_data import shared_data_dir

    out: dict = {}
    data = shared_data_dir()
    if data is None:
        out["real_clips"] = "skipped: ../shared/data is absent"
    else:
        from .fit_lips import leave_one_out, load_clips, _pca, K_MODES

        log("realism: tracking and aligning the transcribed talking faces ...")
        model = LipModel.load()
        clips = load_clips(data, log)
        in_sample = {}
        for c in clips:
            coeffs = model.coefficients(c.timing, c.times)
            predicted = shape_measures(c.clip_mean[None] + np.tensordot(coeffs, model.modes, axes=1))[0]
            in_sample[c.name] = round(_r(predicted, shape_measures(c.shapes)[0]) or 0.0, 3)
        modes, _ = _pca(clips, K_MODES)
        loo = {k: round(v, 3) for k, v in leave_one_out(clips, modes, model.lead, model.tau).items()}
        out["real_clips"] = {
            "opening_r_per_clip_leave_one_out": loo,
            "opening_r_mean_leave_one_out": round(float(np.mean(list(loo.values()))), 3),
            "opening_r_per_clip_shipped_model": in_sample,
            "opening_r_mean_shipped_model": round(float(np.mean(list(in_sample.values()))), 3),
            "note": "Pearson r between the mouth opening the lip model predicts from each clip's phone timing "
                    "(PocketSphinx alignment of its transcript) and the tracker's measured opening. Leave one "
                    "out: the model is refitted without the clip it is scored on (the honest figure); "
                    "shipped model: fitted on all clips (in-sample)."}
    out["round_trip"] = round_trip(corpus, max_videos, log)
    return out


def round_trip(corpus: Path, max_videos: int, log: Callable[[str], None]) -> dict | str:
    from .measure import measure_video

    videos = sorted((corpus / "videos").glob("*.mp4"))[:max_videos] if (corpus / "videos").exists() else []
    if not videos:
        return "no rendered videos in this corpus"
    per_video = {}
    for v in videos:
        log(f"round trip: {v.name}")
        driving = load_lip_track(v.with_suffix(".lips.npz"))
        measured = measure_video(v, cache=False).track
        n = min(len(driving), len(measured))
        ok = measured.face_present[:n]
        per_video[v.stem] = {"opening_r": round(_r(driving.opening[:n][ok], measured.opening[:n][ok]) or 0.0, 3),
                             "width_r": round(_r(driving.width[:n][ok], measured.width[:n][ok]) or 0.0, 3),
                             "face_found": round(float(ok.mean()), 3)}
    return {"videos": per_video,
            "opening_r_mean": round(float(np.mean([v["opening_r"] for v in per_video.values()])), 3),
            "note": "rendered portrait videos run back through the tracker: r between the opening that drove "
                    "the renderer and the opening the tracker measures"}
