"""`avcall eval captions`: word error rate and caption latency, raw and after the enhancer, on real speech.

Clips with transcripts: the utterances of DIR/speech/ (transcripts in DIR/MANIFEST.tsv) and the talking faces
of DIR/talking_faces/ (GRID: the file-name grammar, in the manifest; LRS2: the `.txt` beside each). Each one
is heard in four conditions built with a fixed seed as `avcall eval enhance` builds them: `clean` (as
recorded), `noise5dB` and `noise0dB` (a real noise of DIR/noise/) and `talker0dB` (another real utterance of
DIR/speech/). Each is captioned `raw` and `enhanced` (avcall-av: the lips where there is a face, the
audio-only model where there is none; avcall-ao when no lip-guided model ships), by the same Captioner the
live paths run, fed 10 ms at a time.

- `wer`: word errors (substitutions, deletions, insertions) over the reference words, pooled over the clips,
  after normalising both texts (case, punctuation, numbers as words).
- `partial_latency_s` / `final_latency_s`: for each word of the reference that the captions get right, the
  time from the word's end in the audio (forced alignment of the transcript on the clean recording) to its
  first appearance in a partial caption, and in the final one: the audio heard by then, plus the time the
  captioner took on that hop, plus the enhancer's latency on the enhanced path. Medians over the words.
"""

from __future__ import annotations

import csv
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avcall.pipelines.errors import InputError
from avcall.pipelines.frames import SAMPLE_RATE, LipFeatures

from .evaluate import (build_methods, check_data_dir, clip_rng, fit_length, load_audio,
                       noise_files, scale_to_snr, speech_files, write_report)

CONDITIONS = ("clean", "noise5dB", "noise0dB", "talker0dB")
PATHS = ("raw", "enhanced")
ENHANCERS = ("avcall-av", "avcall-ao")  # the lip-guided one when it ships, else the audio-only one


@dataclass
class CaptionClip:
    name: str
    audio: np.ndarray  # 16 kHz mono float32, as recorded
    text: str
    lips: object | None  # LipTrack of the talking face, None for speech/
    audio_offset: float


def speech_transcripts(data: Path) -> dict[str, str]:
    """{file name in speech/: transcript} from MANIFEST.tsv's notes ('Transcript...: ""..."".')."""
    out = {}
    manifest = data / "MANIFEST.tsv"
    if not manifest.exists():
        return out
    with manifest.open(newline="") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) >= 7 and row[1].startswith("speech/"):
                m = re.search(r'Transcript[^:]*:\s*"+([^"]+)"', row[6])
                if m:
                    out[row[1].split("/", 1)[1]] = m.group(1).strip()
    return out


def caption_clips(data: Path, measure=None, clips: int | None = None) -> list[CaptionClip]:
    from avcall.models.data.realclips import transcribed_clips

    if measure is None:
        from avcall.models.data.measure import measure_video as measure
    out = []
    texts = speech_transcripts(data)
    for path in speech_files(data):
        if path.name in texts:
            out.append(CaptionClip(path.name, load_audio(path), texts[path.name], None, 0.0))
    for clip in transcribed_clips(data):
        m = measure(clip.path)
        out.append(CaptionClip(clip.path.name, np.asarray(m.audio, np.float32), clip.text, m.track,
                               float(m.audio_offset)))
    if clips is not None:
        out = out[:max(0, clips)]
    if not out:
        raise InputError(f"--data {data}: no clip with a transcript (speech/ with MANIFEST.tsv, talking_faces/ "
                         "GRID or LRS2 with their .txt)")
    return out


def conditions(clip: CaptionClip, others: list[tuple[str, np.ndarray]], noises: list[tuple[str, np.ndarray]],
               seed: int) -> dict[str, np.ndarray]:
    """The clip in each condition (same length as recorded; peaks kept below 1)."""
    n = len(clip.audio)
    rng = clip_rng(seed, clip.name)
    talker = [a for name, a in others if name != clip.name]
    talker = talker[int(rng.integers(len(talker)))]
    _, noise = noises[int(rng.integers(len(noises)))]
    noise_part = fit_length(noise, n, int(rng.integers(len(noise))))
    out = {"clean": clip.audio}
    for name, added, snr in (("noise5dB", noise_part, 5.0), ("noise0dB", noise_part, 0.0),
                             ("talker0dB", fit_length(talker, n), 0.0)):
        mix = clip.audio + scale_to_snr(clip.audio, added, snr)
        out[name] = (mix * min(1.0, 0.99 / max(float(np.abs(mix).max()), 1e-9))).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------- scoring
def edit_alignment(ref: list[str], hyp: list[str]) -> tuple[int, dict[int, int]]:
    """Word errors (S + D + I) and the reference words matched exactly: {ref index: hyp index}."""
    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1), np.int32)
    d[:, 0], d[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]))
    hits, i, j = {}, n, m
    while i > 0 and j > 0:
        if d[i, j] == d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            if ref[i - 1] == hyp[j - 1]:
                hits[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif d[i, j] == d[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return int(d[n, m]), hits


def lip_frames(track, audio_offset: float) -> list[LipFeatures]:
    """The talking face's lip features as the live path gets them, on the audio's clock."""
    return [LipFeatures(pts=i / track.fps - audio_offset, present=bool(track.face_present[i]),
                        confidence=float(track.confidence[i]), shape=track.lips[i].astype(np.float32),
                        opening=float(track.opening[i]), width=float(track.width[i]))
            for i in range(len(track.lips))]


def caption(audio: np.ndarray, lips: list[LipFeatures], engine) -> list[tuple[object, float]]:
    """The Captioner over a clip, 10 ms at a time with the lip frames interleaved by pts:
    [(caption, seconds the captioner took on the hop that emitted it)]."""
    from avcall.pipelines.stages.captioner import Captioner

    captioner = Captioner(engine)
    hop = SAMPLE_RATE // 100
    out, k = [], 0
    for start in range(0, len(audio), hop):
        t = start / SAMPLE_RATE
        while k < len(lips) and lips[k].pts <= t:
            captioner.see(lips[k])
            k += 1
        began = time.perf_counter()
        new = captioner.hear(audio[start:start + hop], t)
        took = time.perf_counter() - began
        out += [(c, took) for c in new]
    out += [(c, 0.0) for c in captioner.end_line()]
    return out


def score_clip(ref_text: str, timed_words: list, emitted: list[tuple[object, float]], extra_latency: float) -> dict:
    from avcall.models.data.align import normalise

    ref = normalise(ref_text)
    finals = [c for c, _ in emitted if c.kind == "final"]
    hyp = normalise(" ".join(c.text for c in finals))
    errors, _ = edit_alignment(ref, hyp)
    # latency: words of the forced alignment, found in the captions in the order they came out
    timed = [w for w in timed_words if normalise(w.word)]
    names = [normalise(w.word)[0] for w in timed]
    first_partial: dict[int, float] = {}
    first_final: dict[int, float] = {}
    shown: list[str] = []  # the finals so far, then the current line's partial
    for c, took in emitted:
        words = shown + normalise(c.text)
        _, hits = edit_alignment(names, words)
        when = c.emitted + took + extra_latency
        for i in hits:
            first_partial.setdefault(i, when)
            if c.kind == "final":
                first_final.setdefault(i, when)
        if c.kind == "final":
            shown += normalise(c.text)
    partial = [first_partial[i] - timed[i].end for i in sorted(first_partial)]
    final = [first_final[i] - timed[i].end for i in sorted(first_final)]
    return {"ref_words": len(ref), "errors": errors, "wer": errors / max(len(ref), 1), "hypothesis": " ".join(hyp),
            "partial_latencies": [round(x, 3) for x in partial], "final_latencies": [round(x, 3) for x in final]}


def summarise(rows: list[dict]) -> dict:
    out: dict = {}
    for cond in CONDITIONS:
        for path in PATHS:
            sel = [r for r in rows if r["condition"] == cond and r["path"] == path]
            if not sel:
                continue
            partial = [x for r in sel for x in r["partial_latencies"]]
            final = [x for r in sel for x in r["final_latencies"]]
            out.setdefault(cond, {})[path] = {
                "wer": sum(r["errors"] for r in sel) / max(sum(r["ref_words"] for r in sel), 1),
                "partial_latency_s": statistics.median(partial) if partial else None,
                "final_latency_s": statistics.median(final) if final else None,
                "n": len(sel)}
    return out


def format_table(summary: dict) -> str:
    lines = ["| condition | WER raw | WER enhanced | partial latency (raw / enh.) | final latency (raw / enh.) |",
             "| --- | --- | --- | --- | --- |"]
    for cond, by in summary.items():
        raw, enh = by.get("raw", {}), by.get("enhanced", {})

        def pct(d):
            return f"{100 * d['wer']:.1f}%" if d else "–"

        def s(d, k):
            return f"{d[k]:.2f} s" if d and d.get(k) is not None else "–"

        lines.append(f"| {cond} | {pct(raw)} | {pct(enh)} | {s(raw, 'partial_latency_s')} / "
                     f"{s(enh, 'partial_latency_s')} | {s(raw, 'final_latency_s')} / {s(enh, 'final_latency_s')} |")
    return "\n".join(lines)


def evaluate_captions(data: Path, out: Path, *, seed: int = 0, clips: int | None = None, enhance: bool = True,
                      progress: bool = True, measure=None) -> dict:
    from avcall.models.avse.runtime_enhancer import LATENCY_MS
    from avcall.models.data.align import align
    from avcall.pipelines.asr import make_engine

    data = check_data_dir(data)
    items = caption_clips(data, measure, clips)
    others = [(p.name, load_audio(p)) for p in speech_files(data)]
    noises = [(p.name, load_audio(p)) for p in noise_files(data)]
    if not noises:
        raise InputError(f"{data / 'noise'}: no noise recording to mix")
    enhancer, why = None, ""
    if enhance:
        for name in ENHANCERS:
            try:
                enhancer = build_methods([name])[0][0]
                break
            except InputError as err:
                why = str(err)
        if enhancer is None:
            raise InputError(f"the enhanced path needs the enhancer: {why} (or run with --raw-only)")
    engine_spec = "pocketsphinx"
    paths = PATHS if enhancer is not None else ("raw",)
    rows = []
    bar = tqdm(total=len(items) * len(CONDITIONS) * len(paths), desc="captions", disable=not progress)
    for item in items:
        timed = align(item.audio, item.text).words
        lips = lip_frames(item.lips, item.audio_offset) if item.lips is not None else []
        for cond, audio in conditions(item, others, noises, seed).items():
            for path in paths:
                heard, extra = audio, 0.0
                if path == "enhanced":
                    heard = enhancer.enhance(audio, item.lips, item.audio_offset)
                    extra = LATENCY_MS / 1000
                # a fresh decoder each time: PocketSphinx adapts its cepstral mean across utterances, and the
                # figures must not depend on what was heard before
                row = score_clip(item.text, list(timed), caption(heard, lips, make_engine(engine_spec)), extra)
                rows.append({"clip": item.name, "condition": cond, "path": path, "reference": item.text} | row)
                bar.update(1)
    bar.close()
    report = {"meta": {"data": str(data), "seed": seed, "engine": engine_spec, "clips": len(items),
                       "enhancer": enhancer.name if enhancer else None},
              "rows": rows, "summary": summarise(rows)}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_report(out, report)
    return report


def add_arguments(p) -> None:
    p.add_argument("--data", type=Path, help="folder laid out like ../shared/data (default: it, when present)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="report JSON to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clips", type=int, help="only the first N clips (a quick look)")
    p.add_argument("--raw-only", action="store_true", help="skip the enhanced path (no enhancer weights needed)")
    p.add_argument("-q", "--quiet", action="store_true")


def run(args) -> int:
    from .shared_data import shared_data_dir

    report = evaluate_captions(args.data or shared_data_dir(), args.out, seed=args.seed, clips=args.clips,
                               enhance=not args.raw_only, progress=not args.quiet)
    print(format_table(report["summary"]))
    print(f"wrote {args.out}")
    return 0

