"""`avcall eval captions`: word error rate and caption latency, raw and after the enhancer, on real speech.

Clips with transcripts: the utterances of DIR/speech/ (transcripts in DIR/MANIFEST.tsv) and the talking faces
of DIR/talking_faces/ (GRID: the file-name grammar, in the manifest; LRS2: the `.txt` beside each). Each one
is heard in four conditions built with a fixed seed as `avcall eval enhance` builds them: `clean` (as
recorded), `noise5dB` and `noise0dB` (a real noise of DIR/noise/) and `talker0dB` (another real utterance of
DIR/speech/). Each is captioned `raw` and `enhanced` (method `avcall`: what `--enhance` runs, the default noise
suppressor and the limiter; `--enhancer` names another method of `avcall eval enhance`), by the same Captioner
the live paths run, fed 10 ms at a time, by each engine asked for (`--asr`; by default PocketSphinx, the
two-pass engine and Whisper alone, side by side).

- `wer`: word errors (substitutions, deletions, insertions) over the reference words, pooled over the clips,
  after normalising both texts (case, punctuation, numbers as words).
- `partial_latency_s` / `final_latency_s`: for each word of the reference that the captions get right, the
  time from the word's end in the audio (forced alignment of the transcript on the clean recording) to its
  first appearance in a partial caption, and in the final one: the audio heard by then, plus the time the
  captioner took on that hop (its CPU time: the wait on a core of its own, as live calls run it in a process
  of its own), plus the enhancer's latency on the enhanced path. Medians over the words.
  `..._wall_s`: the same with the hop's wall-clock time (on a shared machine, other jobs' time is in it).
- `cpu_per_audio_s`: the CPU time the captioner (voice activity, the engine's partials and finals) took per
  second of audio heard, all clips and conditions together: 0.3 is 30% of one core while a call goes on.
"""

from __future__ import annotations

import csv
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avcall.pipelines.errors import InputError
from avcall.pipelines.frames import SAMPLE_RATE

from .baselines import build_methods
from .data import (check_data_dir, clip_rng, fit_length, git_commit, load_audio, noise_files, scale_to_snr,
                   speech_files, write_report)
from .metrics import edit_alignment

CONDITIONS = ("clean", "noise5dB", "noise0dB", "talker0dB", "turns")
ENGINES = ("pocketsphinx", "two-pass", "whisper")  # compared by default
# raw: the voice as recorded; enhanced: after the suppressor alone; gated: the raw voice through the lip gate (what
# the captioner of a call with a camera hears; only where there is a face). `--inputs` adds others: any method of
# `avcall eval enhance` (dtln, dfn3, rnnoise, ...), and METHOD@W, its output mixed with the raw voice (W of it)
PATHS = ("raw", "enhanced", "gated")
ENHANCERS = ("avcall-nogate",)  # the default noise suppressor and the limiter (the gate is the `gated` path)


@dataclass(frozen=True)
class Input:
    """What the captioner hears: `method`'s output (None: the raw voice), `wet` of it mixed with (1 - wet) of
    the raw voice; `name` as --inputs writes it. A noise suppressor's (dtln, dfn3, rnnoise, avcall-ao) is made
    by the captioner itself, as a call runs it (`hears`, the Captioner's `DryWet`); another method's over the
    whole clip first."""

    name: str
    method: str | None = None
    wet: float = 1.0

    @property
    def hears(self) -> str:
        from avcall.pipelines.suppressors import BACKENDS

        return f"{self.method}@{self.wet:g}" if self.method in BACKENDS else "raw"

    @classmethod
    def parse(cls, name: str, enhancer: str) -> Input:
        if name in ("raw", "gated"):
            return cls(name)
        method, _, wet = name.partition("@")
        try:
            share = float(wet) if wet else 1.0
        except ValueError:
            share = -1.0
        if not 0 < share <= 1:
            raise InputError(f"--inputs {name}: expected METHOD or METHOD@W with 0 < W <= 1")
        return cls(name, enhancer if method == "enhanced" else method, share)


@dataclass
class CaptionClip:
    name: str
    audio: np.ndarray  # 16 kHz mono float32, as recorded
    text: str | None  # None: a face clip with no transcript (heard in `turns` only, for the other voice's words)
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
    from avcall.models.data.shared_data import talking_face_clips

    if measure is None:
        from avcall.models.data.measure import measure_video as measure
    out = []
    texts = speech_transcripts(data)
    for path in speech_files(data):
        if path.name in texts:
            out.append(CaptionClip(path.name, load_audio(path), texts[path.name], None, 0.0))
    texts = {clip.path.name: clip.text for clip in transcribed_clips(data)}
    for path in talking_face_clips(data):
        m = measure(path)
        out.append(CaptionClip(path.name, np.asarray(m.audio, np.float32), texts.get(path.name), m.track,
                               float(m.audio_offset)))
    if clips is not None:
        out = out[:max(0, clips)]
    if not out:
        raise InputError(f"--data {data}: no clip with a transcript (speech/ with MANIFEST.tsv, talking_faces/ "
                         "GRID or LRS2 with their .txt)")
    return out


@dataclass
class Heard:
    """A clip in one condition: what the microphone gets, and for `turns` the example (its spans and lips)."""

    audio: np.ndarray
    turns: object | None = None  # models.data.turns.TurnsExample


def conditions(clip: CaptionClip, others: list[tuple[str, np.ndarray]], noises: list[tuple[str, np.ndarray]],
               seed: int) -> dict[str, Heard]:
    """The clip in each condition (same length as recorded, peaks kept below 1; `turns`, as `avcall eval
    enhance` builds it, where the clip has a face and a silence to stretch). A face clip without a transcript is
    heard in `turns` only."""
    from avcall.models.data.turns import build, recognised_words

    n = len(clip.audio)
    rng = clip_rng(seed, clip.name)
    talker = [a for name, a in others if name != clip.name]
    talker = talker[int(rng.integers(len(talker)))]
    _, noise = noises[int(rng.integers(len(noises)))]
    noise_part = fit_length(noise, n, int(rng.integers(len(noise))))
    out = {}
    if clip.text is not None:
        out["clean"] = Heard(clip.audio)
        for name, added, snr in (("noise5dB", noise_part, 5.0), ("noise0dB", noise_part, 0.0),
                                 ("talker0dB", fit_length(talker, n), 0.0)):
            mix = clip.audio + scale_to_snr(clip.audio, added, snr)
            out[name] = Heard((mix * min(1.0, 0.99 / max(float(np.abs(mix).max()), 1e-9))).astype(np.float32))
    if clip.lips is not None:
        turns = build(clip.audio, clip.lips, clip.audio_offset, recognised_words(clip.audio),
                      [a for name, a in others if name != clip.name], noise, seed, clip.name)
        if turns is not None:
            out["turns"] = Heard(turns.mixture, turns)
    return out


def other_words(emitted: list, turns) -> tuple[list, int]:
    """The final captions' words split by where they fall: (the words outside the other voice's spans, as a
    final caption each, and how many fall inside them, by the middle of the word)."""
    from avcall.pipelines.frames import Caption

    kept, inside = [], 0
    for c, took in emitted:
        if c.kind != "final":
            kept.append((c, took))
            continue
        words = []
        for w in c.words:
            hop = int((w.start + w.end) / 2 * 100)
            if 0 <= hop < len(turns.other_only) and turns.other_only[hop]:
                inside += 1
            else:
                words.append(w)
        if words:
            kept.append((Caption("final", " ".join(w.text for w in words), words[0].start, words[-1].end,
                                  c.emitted, c.line, tuple(words)), took))
    return kept, inside


# --------------------------------------------------------------------------------------------- scoring
def caption(audio: np.ndarray, lips: list[LipFeatures], engine, cpu: list | None = None,
            wall: list | None = None, hears: str | None = None,
            options: dict | None = None) -> list[tuple[object, float]]:
    """The Captioner over a clip, 10 ms at a time with the lip frames interleaved by pts:
    [(caption, CPU seconds the captioner took on the hop that emitted it)]: the time it takes on a core of its
    own (live calls run it in a process of its own), whatever else the machine is doing. `cpu`, when given,
    gets the CPU seconds of the whole clip appended; `wall`, the wall-clock seconds of each caption's hop;
    `hears`: the Captioner's (raw, or SUPPRESSOR@W; None: its default); `options`: the Captioner's others
    (`variant`)."""
    from avcall.pipelines.stages.captioner import Captioner

    captioner = Captioner(engine, **(options or {}), **({} if hears is None else {"hears": hears}))
    hop = SAMPLE_RATE // 100
    out, k = [], 0
    cpu_began = time.process_time()
    for start in range(0, len(audio), hop):
        t = start / SAMPLE_RATE
        while k < len(lips) and lips[k].pts <= t:
            captioner.see(lips[k])
            k += 1
        began, began_cpu = time.perf_counter(), time.process_time()
        new = captioner.hear(audio[start:start + hop], t)
        took, took_wall = time.process_time() - began_cpu, time.perf_counter() - began
        out += [(c, took) for c in new]
        if wall is not None:
            wall += [took_wall] * len(new)
    began, began_cpu = time.perf_counter(), time.process_time()
    last = captioner.end_line()
    out += [(c, time.process_time() - began_cpu) for c in last]
    if wall is not None:
        wall += [time.perf_counter() - began] * len(last)
    if cpu is not None:
        cpu.append(time.process_time() - cpu_began)
    return out


# the Captioner's options a variant of `--asr` may set in braces after the engine ("whisper{tail_s=0.6}")
CAPTIONER_OPTIONS = {"pause_s": float, "soft_line_s": float, "short_pause_s": float, "max_line_s": float,
                     "onset_s": float, "preroll_s": float, "partial_every_s": float, "commit_every_s": float,
                     "tail_s": float, "agree_new": lambda x: bool(float(x))}


def variant(spec: str) -> tuple[str, dict]:
    """(the engine's spec, the Captioner's options) of a variant: "whisper[beam=3]{agree_new=1,tail_s=0.2}"."""
    m = re.fullmatch(r"([^{}]+)(?:\{([^{}]*)\})?", spec.strip())
    if m is None:
        raise InputError(f"--asr {spec!r}: expected ENGINE[DECODING]{{CAPTIONER OPTIONS}}")
    options = {}
    for pair in filter(None, (x.strip() for x in (m.group(2) or "").split(","))):
        key, _, value = pair.partition("=")
        if key not in CAPTIONER_OPTIONS:
            raise InputError(f"--asr {spec}: the captioner's options are {', '.join(CAPTIONER_OPTIONS)} (not {key!r})")
        try:
            options[key] = CAPTIONER_OPTIONS[key](value)
        except ValueError:
            raise InputError(f"--asr {spec}: {pair!r} is not a number") from None
    return m.group(1), options


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
    """{engine: {condition: {path: figures}, "cpu_per_audio_s": ...}}."""
    out: dict = {}
    paths = list(dict.fromkeys(r["path"] for r in rows))
    for engine in dict.fromkeys(r["engine"] for r in rows):
        mine = [r for r in rows if r["engine"] == engine]
        by = out[engine] = {}
        for cond in CONDITIONS:
            for path in paths:
                every = [r for r in mine if r["condition"] == cond and r["path"] == path]
                sel = [r for r in every if "errors" in r]  # those with a transcript
                if not every:
                    continue
                partial = [x for r in sel for x in r["partial_latencies"]]
                final = [x for r in sel for x in r["final_latencies"]]
                other = [r for r in every if "other_words" in r]
                audio_s = max(sum(r["audio_s"] for r in every), 1e-9)
                by.setdefault(cond, {})[path] = {
                    "wer": sum(r["errors"] for r in sel) / max(sum(r["ref_words"] for r in sel), 1) if sel else None,
                    "other_words_per_min": (60 * sum(r["other_words"] for r in other)
                                            / max(sum(r["other_s"] for r in other), 1e-9)) if other else None,
                    "partial_latency_s": statistics.median(partial) if partial else None,
                    "final_latency_s": statistics.median(final) if final else None,
                    "cpu_per_audio_s": sum(r["cpu_s"] for r in every) / audio_s,
                    # the suppressor that made this input: its CPU too where the call does not run it anyway
                    "input_cpu_per_audio_s": sum(r.get("input_cpu_s", 0.0) for r in every) / audio_s,
                    "n": len(every)}
                wall_p = [x for r in sel for x in r.get("partial_latencies_wall", ())]
                wall_f = [x for r in sel for x in r.get("final_latencies_wall", ())]
                by[cond][path] |= {"partial_latency_wall_s": statistics.median(wall_p) if wall_p else None,
                                   "final_latency_wall_s": statistics.median(wall_f) if wall_f else None}
        by["cpu_per_audio_s"] = sum(r["cpu_s"] for r in mine) / max(sum(r["audio_s"] for r in mine), 1e-9)
    return out


def format_table(summary: dict) -> str:
    """One row per engine (with its decoding), what it hears and condition: final-line WER, the other voice's
    words, median latencies (the captioner's CPU time on the hop, and the wall clock) and CPU."""
    lines = ["| engine | heard | condition | WER | other voice's words a minute | partial / final latency "
             "| by the wall clock | CPU per s of audio (+ its input's) |", "|" + " --- |" * 8]
    for engine, by in summary.items():
        paths = dict.fromkeys(p for c in CONDITIONS for p in by.get(c, {}))
        for path in paths:
            for cond in CONDITIONS:
                d = by.get(cond, {}).get(path)
                if not d:
                    continue

                def s(k, f="{:.2f}"):
                    return f.format(d[k]) if d.get(k) is not None else "–"

                extra = f" (+{d['input_cpu_per_audio_s']:.3f})" if d.get("input_cpu_per_audio_s") else ""
                lines.append(f"| {engine} | {path} | {cond} | {s('wer', '{:.1%}')} | {s('other_words_per_min', '{:.1f}')}"
                             f" | {s('partial_latency_s')} / {s('final_latency_s')} s | {s('partial_latency_wall_s')} / "
                             f"{s('final_latency_wall_s')} s | {d['cpu_per_audio_s']:.3f}{extra} |")
    return "\n".join(lines)


def heard_inputs(audio: np.ndarray, inputs: list[Input], methods: dict, lips, offset: float) -> dict[str, tuple]:
    """{input name: (the audio the captioner gets, the latency its suppressor adds, that suppressor's CPU seconds
    where it runs before the captioner)}; each method runs once, whatever the mixes of its output (the gated
    path is the caller's). An input the captioner makes itself (`Input.hears`) gets the raw voice, its CPU
    then the captioner's."""
    from avcall.pipelines.suppressors import open_suppressor

    made: dict[str, tuple] = {}
    out = {}
    for heard in inputs:
        if heard.method is None or heard.hears != "raw":
            delay = open_suppressor(heard.method).delay / SAMPLE_RATE if heard.method is not None else 0.0
            out[heard.name] = (audio, delay, 0.0)
            continue
        if heard.method not in made:
            method = methods[heard.method]
            began = time.process_time()
            cleaned = np.asarray(method.enhance(audio, lips, offset), np.float32)[:len(audio)]
            suppressor = getattr(method, "suppressor", None)  # a method of eval enhance without one: 0
            made[heard.method] = (cleaned, suppressor.latency_ms / 1000 if suppressor is not None else 0.0,
                                  time.process_time() - began)
        cleaned, latency, cpu = made[heard.method]
        mixed = cleaned if heard.wet == 1 else (heard.wet * cleaned + (1 - heard.wet) * audio[:len(cleaned)])
        out[heard.name] = (mixed.astype(np.float32), latency, cpu)
    return out


def evaluate_captions(data: Path, out: Path, *, seed: int = 0, clips: int | None = None, enhance: bool = True,
                      progress: bool = True, measure=None, engines: tuple[str, ...] = ENGINES,
                      conditions_only: tuple[str, ...] = CONDITIONS, enhancers: tuple[str, ...] = ENHANCERS,
                      inputs: tuple[str, ...] | None = None, language: str = "en") -> dict:
    """`inputs`: what the captioner hears (names of `Input`; default raw, enhanced by the first of
    `enhancers` that runs here, and gated; raw alone without `enhance`)."""
    from avcall.models.data.align import align
    from avcall.pipelines.asr import make_engine
    from avcall.pipelines.lip_gate import caption_gains, gate_clip

    commit = git_commit()  # the code that runs (a long run: the tree may move meanwhile)
    data = check_data_dir(data)
    items = caption_clips(data, measure, clips)
    others = [(p.name, load_audio(p)) for p in speech_files(data)]
    noises = [(p.name, load_audio(p)) for p in noise_files(data)]
    if not noises:
        raise InputError(f"{data / 'noise'}: no noise recording to mix")
    enhancer, why = None, ""
    if enhance:
        for name in enhancers:
            try:
                enhancer = build_methods([name])[0][0]
                break
            except InputError as err:
                why = str(err)
        if enhancer is None:
            raise InputError(f"the enhanced path needs the enhancer: {why} (or run with --raw-only)")
    names = inputs or (PATHS if enhancer is not None else ("raw",))
    heard_as = [Input.parse(n, enhancer.name if enhancer is not None else enhancers[0]) for n in names]
    methods = {h.method: enhancer if enhancer is not None and h.method == enhancer.name else None
               for h in heard_as if h.method is not None and h.hears == "raw"}
    methods |= {m: build_methods([m])[0][0] for m, built in methods.items() if built is None}
    for spec in engines:  # each loads once here: a missing or damaged model is one line before any work
        make_engine(variant(spec)[0], language=language)
    rows = []
    bar = tqdm(total=len(items) * len(conditions_only) * len(heard_as) * len(engines), desc="captions",
               disable=not progress)
    gated = any(h.name == "gated" for h in heard_as)
    for item in items:
        timed = align(item.audio, item.text).words if item.text else []
        for cond, heard in conditions(item, others, noises, seed).items():
            if cond not in conditions_only:
                continue
            audio, turns = heard.audio, heard.turns
            track, offset = (turns.lips, 0.0) if turns is not None else (item.lips, item.audio_offset)
            lips = track.frames(offset) if track is not None else []
            made = heard_inputs(audio, [h for h in heard_as if h.name != "gated"], methods, track, offset)
            if track is not None and gated:  # the captioner's gate: on the raw voice's time
                made["gated"] = (audio * caption_gains(gate_clip(audio, lips)), 0.0, 0.0)
            for path, (voice, extra, input_cpu) in made.items():
                for spec in engines:
                    # a fresh decoder each time: PocketSphinx adapts its cepstral mean across utterances, and the
                    # figures must not depend on what was heard before
                    cpu: list[float] = []
                    wall: list[float] = []
                    engine_spec, options = variant(spec)
                    emitted = caption(voice, lips, make_engine(engine_spec, language=language), cpu, wall,
                                      next(h.hears for h in heard_as if h.name == path), options)
                    row = {"clip": item.name, "condition": cond, "path": path, "engine": spec,
                           "reference": item.text, "audio_s": len(voice) / SAMPLE_RATE, "cpu_s": cpu[0],
                           "input_cpu_s": input_cpu}
                    if turns is not None:  # the other voice's words, and the target's words alone for the WER
                        emitted, inside = other_words(emitted, turns)
                        row |= {"other_words": inside, "other_s": float(turns.other_only.sum()) / 100}
                    if item.text is not None:
                        row |= score_clip(item.text, list(timed), emitted, extra)
                        by_wall = score_clip(item.text, list(timed), [(c, w) for (c, _), w in zip(emitted, wall)],
                                             extra)
                        row |= {"partial_latencies_wall": by_wall["partial_latencies"],
                                "final_latencies_wall": by_wall["final_latencies"]}
                    else:
                        row |= {"hypothesis": " ".join(c.text for c, _ in emitted if c.kind == "final")}
                    rows.append(row)
                    bar.update(1)
    bar.close()
    faces = {r["clip"] for r in rows if r["path"] == "gated"}
    report = {"meta": {"data": str(data), "seed": seed, "engines": list(engines), "clips": len(items),
                       "inputs": [h.name for h in heard_as], "language": language,
                       "enhancer": enhancer.name if enhancer else None, "threads": 1,
                       "command": "avcall " + " ".join(sys.argv[1:]) if Path(sys.argv[0]).name == "avcall" else None,
                       "commit": commit,
                       "notes": ["gated: the raw voice times the lip gate's gains (what a call with a camera "
                                 "captions); turns: other_words_per_min counts the final captions' words whose middle "
                                 "falls where only the other voice talks, per minute of those spans; the WER there "
                                 "leaves those words out: it is the target's, against its transcript",
                                 "METHOD@W: W of the method's output (delay-aligned) plus 1 - W of the raw voice; "
                                 "input_cpu_per_audio_s: that method's CPU per second of audio (a cost of the "
                                 "captions only where the call does not run it for the listener anyway)"]},
              "rows": rows, "summary": summarise(rows),
              # the face clips alone, every path heard on the same clips (the gated path needs a face)
              "summary_face_clips": summarise([r for r in rows if r["clip"] in faces])}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_report(out, report)
    return report


# EmoDB's sentences (its documentation), by the text code in labels.tsv's notes: the German clips with a transcript
EMODB_TEXTS = {"a01": "Der Lappen liegt auf dem Eisschrank", "a02": "Das will sie am Mittwoch abgeben",
               "a04": "Heute abend könnte ich es ihm sagen", "a07": "In sieben Stunden wird es soweit sein"}


def german_clips(data: Path) -> list[CaptionClip]:
    """EmoDB's dev clips of emotion_labelled/ with a transcript, those its source left whole (zero-padded to 2 s,
    not cut), with half a second of silence before and a second after (a line needs a pause to end)."""
    table = data / "emotion_labelled" / "labels.tsv"
    out = []
    if not table.is_file():
        return out
    with table.open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            code = re.search(r"text=(\w+)", row.get("notes", ""))
            if (row["dataset"] == "EmoDB" and row["split"] == "dev" and "zero-padded" in row["notes"] and code
                    and code.group(1) in EMODB_TEXTS):
                audio = load_audio(data / "emotion_labelled" / row["file"])
                pad = np.zeros(SAMPLE_RATE // 2, np.float32)
                out.append(CaptionClip(row["file"], np.concatenate([pad, audio, pad, pad]), EMODB_TEXTS[code.group(1)],
                                       None, 0.0))
    return out


def evaluate_languages(data: Path, out: Path, *, progress: bool = True) -> dict:
    """Captions in two languages, clean: EmoDB's German clips under --language auto (and de), the English ones of
    speech/ under auto and en. Per language and asked language: WER, CER, how often the language detected is
    the spoken one, CPU per second of audio."""
    from avcall.models.data.align import normalise
    from avcall.pipelines.asr import make_engine

    commit = git_commit()
    data = check_data_dir(data)
    texts = speech_transcripts(data)
    spoken = {"de": german_clips(data),
              "en": [CaptionClip(p.name, load_audio(p), texts[p.name], None, 0.0) for p in speech_files(data)
                     if p.name in texts]}
    if not spoken["de"]:
        raise InputError(f"{data / 'emotion_labelled'}: no EmoDB clip with a transcript")
    runs = [("de", "auto"), ("de", "de"), ("en", "auto"), ("en", "en")]
    rows = []
    for language, asked in tqdm(runs, desc="languages", disable=not progress):
        for item in spoken[language]:
            engine, cpu = make_engine("whisper", language=asked), []
            finals = [c for c, _ in caption(item.audio, [], engine, cpu) if c.kind == "final"]
            ref, hyp = normalise(item.text), normalise(" ".join(c.text for c in finals))
            chars_ref, chars_hyp = list(" ".join(ref)), list(" ".join(hyp))
            rows.append({"clip": item.name, "language": language, "asked": asked, "reference": item.text,
                         "hypothesis": " ".join(c.text for c in finals), "detected": engine.language,
                         "ref_words": len(ref), "word_errors": edit_alignment(ref, hyp)[0],
                         "ref_chars": len(chars_ref), "char_errors": edit_alignment(chars_ref, chars_hyp)[0],
                         "audio_s": len(item.audio) / SAMPLE_RATE, "cpu_s": cpu[0]})
    summary = {}
    for language, asked in runs:
        sel = [r for r in rows if r["language"] == language and r["asked"] == asked]
        summary.setdefault(language, {})[asked] = {
            "clips": len(sel), "wer": sum(r["word_errors"] for r in sel) / max(sum(r["ref_words"] for r in sel), 1),
            "cer": sum(r["char_errors"] for r in sel) / max(sum(r["ref_chars"] for r in sel), 1),
            "detected_right": sum(r["detected"] == language for r in sel) / max(len(sel), 1),
            "cpu_per_audio_s": sum(r["cpu_s"] for r in sel) / max(sum(r["audio_s"] for r in sel), 1e-9)}
    report = {"meta": {"data": str(data), "engine": "whisper", "commit": commit,
                       "command": "avcall " + " ".join(sys.argv[1:]) if Path(sys.argv[0]).name == "avcall" else None,
                       "notes": ["de: EmoDB's dev clips left whole by its source (emotion_labelled/, research use), "
                                 "transcripts from EmoDB's documentation; en: speech/'s utterances; clean audio; "
                                 "en asks tiny.en, auto and de the multilingual base"]},
              "rows": rows, "summary": summary}
    write_report(out, report)
    return report


def add_arguments(p) -> None:
    p.add_argument("--data", type=Path, help="folder laid out like ../shared/data (default: it, when present)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="report JSON to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clips", type=int, help="only the first N clips (a quick look)")
    p.add_argument("--raw-only", action="store_true", help="skip the enhanced path (no enhancer weights needed)")
    p.add_argument("--enhancer", metavar="METHOD", help="the enhanced path's enhancer, a method of `avcall eval "
                   "enhance` (default: avcall-nogate, what --enhance runs without the gate; or dtln, dfn3, ...)")
    p.add_argument("--inputs", metavar="INPUT[,INPUT...]",
                   help="what the captioner hears, side by side: raw, gated, enhanced, any method of `avcall eval "
                   "enhance` (dtln, dfn3, rnnoise, ...), METHOD@W: W of its output mixed with 1 - W of the raw "
                   "voice (default raw,enhanced,gated; raw with --raw-only)")
    p.add_argument("--asr", default=",".join(ENGINES), metavar="ENGINE[,ENGINE...]",
                   help=f"the engines to compare (default {','.join(ENGINES)}; also whisper-base, "
                   "whisper[beam=3,fallback=0.2/0.4,no_speech=0.6,logprob=-1,prompt=0,ngram=3] for Whisper's "
                   "decoding and every=S for its partials' interval, or package.module:Class; the captioner's "
                   "options in braces after an engine: whisper{agree_new=1,tail_s=0.6,partial_every_s=0.25})")
    p.add_argument("--language", default="en", help="the language the engines are asked for (en, de, auto, ...)")
    p.add_argument("--conditions", default=",".join(CONDITIONS), metavar="COND[,COND...]",
                   help=f"only these of {','.join(CONDITIONS)}")
    p.add_argument("--languages", action="store_true", help="instead: captions in German (EmoDB) and English, "
                   "clean, under --language auto, de and en: WER and CER per language, the language detected")
    p.add_argument("-q", "--quiet", action="store_true")


def run(args) -> int:
    from avcall.models.data.shared_data import shared_data_dir
    from avcall.pipelines.asr import split_specs

    if args.languages:
        report = evaluate_languages(args.data or shared_data_dir(), args.out, progress=not args.quiet)
        print("| spoken | --language | clips | WER | CER | detected right | CPU per s of audio |\n"
              "| --- | --- | --- | --- | --- | --- | --- |")
        for language, by in report["summary"].items():
            for asked, d in by.items():
                print(f"| {language} | {asked} | {d['clips']} | {d['wer']:.1%} | {d['cer']:.1%} | "
                      f"{d['detected_right']:.0%} | {d['cpu_per_audio_s']:.3f} |")
        print(f"wrote {args.out}")
        return 0
    report = evaluate_captions(args.data or shared_data_dir(), args.out, seed=args.seed, clips=args.clips,
                               enhance=not args.raw_only, progress=not args.quiet, engines=tuple(split_specs(args.asr)),
                               conditions_only=tuple(c for c in args.conditions.split(",") if c in CONDITIONS),
                               enhancers=(args.enhancer,) if args.enhancer else ENHANCERS,
                               inputs=tuple(i for i in args.inputs.split(",") if i) if args.inputs else None,
                               language=args.language)
    print(format_table(report["summary"]))
    if report["summary_face_clips"]:
        print("\nThe face clips alone (every path on the same clips):")
        print(format_table(report["summary_face_clips"]))
    print(f"wrote {args.out}")
    return 0
