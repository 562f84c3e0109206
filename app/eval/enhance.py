"""`avcall eval enhance`: speech enhancement measured on real recordings.

Conditions (built with a fixed seed from a folder laid out like `../shared/data`):
- for each talking-face clip of `talking_faces/`, its own recorded audio is the target (the clean reference):
  `talker0dB` adds an utterance of `speech/` (another person) at 0 dB SNR, `noise0dB` and `noise5dB` add a
  real noise of `noise/` at 0 and 5 dB; the clip's lip track goes to the methods that read lips;
- `pair`: the real noisy/clean pairs of `noise/` (no video, so no lips).

Methods: those of the registry in baselines.py (`noisy`, `noisereduce`, every noise suppressor of
pipelines/suppressors by its name, `avcall`: what `--enhance` runs, and the lip-guided models under evaluation
when their weights are there).
Metrics: SI-SDR, its improvement over the input, PESQ wideband, STOI, and the real-time factor on one core.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from avcall.models.data.shared_data import shared_data_dir, talking_face_clips
from avcall.pipelines.errors import InputError, OutputError

from .baselines import METHODS, Method, build_methods
from .cpu import cpu_name, one_core
from .data import (SAMPLE_RATE, check_data_dir, clip_rng, fit_length, load_audio, noise_files, noise_pairs,
                   scale_to_snr, speech_files, write_report)
from .metrics import measured_delay, pesq_wb, si_sdr, stoi_score

if TYPE_CHECKING:
    import numpy as np
    from avcall.models.data.turns import TurnsExample
    from avcall.pipelines.face.lip_track import LipTrack

CONDITIONS = {
    "talker0dB": "the clip's own audio + an utterance of speech/ (another person) at 0 dB SNR, looped/cut to "
                 "the clip's length",
    "noise0dB": "the clip's own audio + a real noise of noise/ at 0 dB SNR (random offset, looped if short)",
    "noise5dB": "the clip's own audio + the same noise excerpt as noise0dB at 5 dB SNR",
    "pair": "the real noisy/clean pairs of noise/ (VoiceBank-DEMAND p287, a babble pair at 0 dB); no video",
    "turns": "a call where the user talks and listens (models/data/turns.py): the clip's silences of 300 ms or more "
             "stretched to 2.5 s with its own frames and sound played to and fro; another person of speech/ in each "
             "(150 ms from the words) and over about 20% of the target's speech, at 0 dB against its active level; "
             "the noise of noise0dB 20 dB under it",
}
CLIP_CONDITIONS = ("talker0dB", "noise0dB", "noise5dB", "turns")
# The methods the enhancement issue compares; those not registered are named in the report's meta.
ISSUE_METHODS = ("noisy", "noisereduce", "avcall", "dtln", "dfn3", "rnnoise", "avcall-ao", "avcall-av", "avdcnn")
METRICS = ("si_sdr", "si_sdr_improvement", "pesq", "stoi", "rtf", "other_leak_db", "target_cut", "onset_late_ms")
GATE_BASE = "dtln"  # the suppressor the gated methods run: their `target_cut` is measured against its output
OPEN_DB = -3.0  # the gate counts as open (onset_late_ms) once within this of 1
CUT_DB = -6.0  # a target hop attenuated more than this against the suppressor alone is cut (target_cut)
PEAK = 0.99  # a mixture louder than this is scaled down (with its reference) so that no method sees clipping
NOTES = [
    ("The clean reference of the talking-face conditions is the clip's own recorded audio: real speech, "
     "recorded with whatever room and microphone noise the clip has, so no method can reach an infinite SI-SDR "
     "and a method that removes the recording's own background is charged for it."),
    "SNRs are set over the whole clip length (energy of the target / energy of the added signal).",
    ("A mixture whose peak exceeds 0.99 is scaled down together with its reference (all metrics are "
     "scale-invariant or level-aligned)."),
    ("rtf = processing seconds / audio seconds, with the process pinned to one CPU core and numeric libraries "
     "limited to one thread; metric computation is not timed."),
    ("pesq is null where the PESQ library refuses the pair (too short, no utterance found); stoi is null where "
     "the clip has too few speech frames; summary means skip nulls."),
    ("turns: other_leak_db = 10 log10 of the output's energy over the input's, over the hops where only the other "
     "voice talks; target_cut = the share of the hops where only the target talks (and loud) that a gated method "
     f"attenuates by more than {-CUT_DB:.0f} dB against {GATE_BASE} alone; onset_late_ms = median over the target's "
     f"phrase starts after a stretched silence of the time until the gate is within {-OPEN_DB:.0f} dB of open."),
]


# --------------------------------------------------------------------------------------------- data
@dataclass
class EvalExample:
    condition: str
    clip: str
    noisy: np.ndarray  # 16 kHz mono float32
    clean: np.ndarray  # the reference, same length
    lips: LipTrack | None
    audio_offset: float
    source: str  # what was added (file and offset), or the pair's files
    turns: TurnsExample | None = None  # the turns condition: what each hop holds
    other_lips: LipTrack | None = None  # another clip's lips on this example's time line (the gate's failing case)

    @property
    def seconds(self) -> float:
        return len(self.noisy) / SAMPLE_RATE

def _mix(target: np.ndarray, added: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    noisy = target.astype(np.float64) + added.astype(np.float64)
    peak = float(np.abs(noisy).max(initial=0.0))
    gain = PEAK / peak if peak > PEAK else 1.0
    return (noisy * gain).astype(np.float32), (target.astype(np.float64) * gain).astype(np.float32)

def clip_examples(clip: str, target: np.ndarray, lips: LipTrack | None, audio_offset: float,
                  speech: list[tuple[str, np.ndarray]], noises: list[tuple[str, np.ndarray]],
                  seed: int) -> list[EvalExample]:
    """The mixtures of one clip: talker0dB, noise0dB, noise5dB (the same noise excerpt in both) and, where the
    clip has a silence to stretch, turns."""
    from avcall.models.data.turns import build, recognised_words

    import numpy as np

    n = len(target)
    rng = clip_rng(seed, clip)
    talker_name, talker = speech[int(rng.integers(len(speech)))]
    noise_name, noise = noises[int(rng.integers(len(noises)))]
    offset = int(rng.integers(len(noise)))
    target = np.asarray(target, np.float32)
    talker_part = fit_length(talker, n)
    noise_part = fit_length(noise, n, offset)
    out = []
    for condition, added, snr, source in (
            ("talker0dB", talker_part, 0.0, talker_name),
            ("noise0dB", noise_part, 0.0, f"{noise_name}@{offset / SAMPLE_RATE:.2f}s"),
            ("noise5dB", noise_part, 5.0, f"{noise_name}@{offset / SAMPLE_RATE:.2f}s")):
        noisy, clean = _mix(target, scale_to_snr(target, added, snr))
        out.append(EvalExample(condition, clip, noisy, clean, lips, audio_offset, source))
    if lips is not None:
        turns = build(target, lips, audio_offset, recognised_words(target), [a for _, a in speech], noise, seed, clip)
        if turns is not None:
            out.append(EvalExample("turns", clip, turns.mixture, turns.target, turns.lips, 0.0,
                                   f"{turns.source}; {noise_name}", turns=turns))
    return out

def pair_examples(data: Path) -> list[EvalExample]:
    out = []
    for name, noisy_path, clean_path in noise_pairs(data):
        noisy, clean = load_audio(noisy_path), load_audio(clean_path)
        n = min(len(noisy), len(clean))
        out.append(EvalExample("pair", name, noisy[:n], clean[:n], None, 0.0,
                               f"{noisy_path.name} / {clean_path.name}"))
    return out

@dataclass
class Plan:
    clips: list[Path]
    speech: list[Path]
    noises: list[Path]
    pairs: list[tuple[str, Path, Path]]

    @property
    def total(self) -> int:
        return len(CLIP_CONDITIONS) * len(self.clips) + len(self.pairs)

def plan(data: Path, clips: int | None = None) -> Plan:
    data = check_data_dir(data)
    videos = talking_face_clips(data)
    if clips is not None:
        videos = videos[:max(0, clips)]
    p = Plan(videos, speech_files(data), noise_files(data), noise_pairs(data))
    if videos and not p.speech:
        raise InputError(f"{data / 'speech'}: no utterance to use as a competing talker")
    if videos and not p.noises:
        raise InputError(f"{data / 'noise'}: no noise recording (other than noisy/clean pairs) to mix")
    if not videos and not p.pairs:
        raise InputError(f"--data {data}: no talking-face clip and no noisy/clean pair to evaluate on")
    return p

def examples(data: Path, seed: int = 0, clips: int | None = None, measure=None,
             skipped: list[str] | None = None) -> Iterator[EvalExample]:
    """Every example, clip by clip (three conditions each), then the pairs. `measure(path)` gives a clip's
    MeasuredVideo (default: models.data.measure.measure_video, cached)."""
    if measure is None:
        from avcall.models.data.measure import measure_video as measure
    import numpy as np

    p = plan(data, clips)
    speech = [(f.name, load_audio(f)) for f in p.speech]
    noises = [(f.name, load_audio(f)) for f in p.noises]
    previous_turns = None  # the last clip's turns lips: another person's lips for this clip's (the first: the last's)
    pending = []
    for video in p.clips:
        measured = measure(video)
        audio = np.asarray(measured.audio, np.float32)
        if len(audio) < SAMPLE_RATE // 4 or float(np.abs(audio).max(initial=0)) < 1e-4:
            if skipped is not None:
                skipped.append(f"{video.name}: no usable audio")
            continue
        for ex in clip_examples(video.name, audio, measured.track, float(measured.audio_offset), speech, noises,
                                seed):
            if ex.turns is None:
                yield ex
            elif previous_turns is None:
                pending.append(ex)  # waits for the last clip's lips
            else:
                yield _with_other_lips(ex, previous_turns)
            previous_turns = ex.lips if ex.turns is not None else previous_turns
    for ex in pending:
        yield _with_other_lips(ex, previous_turns)
    yield from pair_examples(data)


def _with_other_lips(ex: EvalExample, other: LipTrack) -> EvalExample:
    """`ex` with another clip's lips looped or cut to its length (a face that talks and listens at other times)."""
    import dataclasses

    import numpy as np

    return dataclasses.replace(ex, other_lips=other.take(np.arange(len(ex.lips)) % len(other)))


# --------------------------------------------------------------------------------------------- running
def warm_up(method: Method) -> None:
    """One untimed call, so that lazy loading is not charged to the first example."""
    import numpy as np

    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE // 2).astype(np.float32) * 0.01
    method.enhance(noise, None, 0.0)

def run_method(method: Method, ex: EvalExample) -> tuple[np.ndarray, float]:
    import numpy as np

    lips = (ex.other_lips if getattr(method, "lips_from_other_clip", False) else ex.lips) if method.needs_lips else None
    began = time.perf_counter()
    out = method.enhance(ex.noisy, lips, ex.audio_offset)
    elapsed = time.perf_counter() - began
    out = np.asarray(out, np.float32).reshape(-1)
    if len(out) != len(ex.noisy):
        raise RuntimeError(f"method {method.name} returned {len(out)} samples for {len(ex.noisy)} "
                           f"({ex.condition}, {ex.clip})")
    if not np.all(np.isfinite(out)):
        raise RuntimeError(f"method {method.name} returned non-finite samples ({ex.condition}, {ex.clip})")
    return out, elapsed

def delay_info(method: Method, ex: EvalExample | None) -> dict:
    """For a streaming suppressor: its declared delay, the one measured on a mixture, its algorithmic latency."""
    suppressor = getattr(method, "suppressor", None)
    if suppressor is None or ex is None:
        return {}
    return {"delay_ms": 1000 * suppressor.delay / SAMPLE_RATE,
            "delay_ms_measured": 1000 * measured_delay(suppressor, ex.noisy) / SAMPLE_RATE,
            "algorithmic_latency_ms": suppressor.latency_ms}

def score(ex: EvalExample, out: np.ndarray, input_si_sdr: float) -> dict:
    value = si_sdr(ex.clean, out)
    return {"si_sdr": value, "si_sdr_improvement": value - input_si_sdr,
            "pesq": pesq_wb(ex.clean, out), "stoi": stoi_score(ex.clean, out)}


def turn_figures(ex: EvalExample, out: np.ndarray, base: np.ndarray | None, gains: np.ndarray | None) -> dict:
    """The turns condition's figures of one method's output (see NOTES); `base`: the suppressor alone's output,
    `gains`: the method's gate (None for a method without one)."""
    import numpy as np

    from avcall.models.data.turns import HOP

    figures = {"other_leak_db": None, "target_cut": None, "onset_late_ms": None}
    if ex.turns is None:
        return figures
    n = min(len(out), len(ex.noisy)) // HOP

    def energy(x):
        return np.sum(np.square(x[:n * HOP].astype(np.float64).reshape(n, HOP)), axis=1)

    e_in, e_out = energy(ex.noisy), energy(out)
    other = ex.turns.other_only[:n]
    if other.any():
        figures["other_leak_db"] = float(10 * np.log10((e_out[other].sum() + 1e-12) / (e_in[other].sum() + 1e-12)))
    if gains is not None and base is not None:
        target = ex.turns.target_only[:n]
        ratio = 10 * np.log10((e_out[target] + 1e-12) / (energy(base)[target] + 1e-12))
        figures["target_cut"] = float(np.mean(ratio < CUT_DB)) if target.any() else None
        late = []
        for onset in ex.turns.onsets:
            i = int(round(onset * SAMPLE_RATE))
            opened = np.flatnonzero(gains[i:i + SAMPLE_RATE // 2] >= 10 ** (OPEN_DB / 20))
            late.append(1000 * (opened[0] if len(opened) else SAMPLE_RATE // 2) / SAMPLE_RATE)
        figures["onset_late_ms"] = float(np.median(late)) if late else None
    return figures

def summarise(rows: list[dict]) -> dict:
    """{condition: {method: {metric mean (nulls skipped; null when none), n}}}, in the rows' order."""
    import numpy as np

    groups: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        groups.setdefault(row["condition"], {}).setdefault(row["method"], []).append(row)
    summary = {}
    for condition, by_method in groups.items():
        summary[condition] = {}
        for method, group in by_method.items():
            entry = {}
            for metric in METRICS:
                values = [r[metric] for r in group if r[metric] is not None]
                entry[metric] = float(np.mean(values)) if values else None
            entry["n"] = len(group)
            summary[condition][method] = entry
    return summary

def format_table(summary: dict, methods: list[str]) -> str:
    """Methods down, conditions across: SI-SDRi dB / PESQ-wb / STOI, then the mean real-time factor."""
    conditions = list(summary)
    width = 22

    def cell(entry: dict | None) -> str:
        if not entry:
            return "-"
        parts = [f"{entry['si_sdr_improvement']:+.2f}" if entry["si_sdr_improvement"] is not None else "-",
                 f"{entry['pesq']:.2f}" if entry["pesq"] is not None else "-",
                 f"{entry['stoi']:.3f}" if entry["stoi"] is not None else "-"]
        return " / ".join(parts)

    name_w = max([len("method")] + [len(m) for m in methods]) + 2
    lines = ["SI-SDRi dB / PESQ-wb / STOI (means; n examples per condition)",
             "method".ljust(name_w) + "".join(f"{c} (n={_n(summary[c])})".ljust(width) for c in conditions)
             + "rtf(1 core)"]
    for m in methods:
        rtfs = [summary[c][m]["rtf"] for c in conditions if m in summary[c] and summary[c][m]["rtf"] is not None]
        rtf = f"{sum(rtfs) / len(rtfs):.4f}" if rtfs else "-"
        lines.append(m.ljust(name_w) + "".join(cell(summary[c].get(m)).ljust(width) for c in conditions) + rtf)
    return "\n".join(lines)

def format_turns(summary: dict, methods: list[str]) -> str:
    """The turns condition's figures, methods down."""
    turns = summary.get("turns")
    if not turns:
        return ""

    def f(entry, key, fmt):
        return fmt.format(entry[key]) if entry and entry.get(key) is not None else "-"

    lines = ["turns (the user talks and listens): other voice's leak dB / target cut / onset late ms / SI-SDRi dB"]
    for m in methods:
        e = turns.get(m)
        lines.append(f"  {m:22s} {f(e, 'other_leak_db', '{:+.1f}'):>7} {f(e, 'target_cut', '{:.1%}'):>7} "
                     f"{f(e, 'onset_late_ms', '{:.0f}'):>5} {f(e, 'si_sdr_improvement', '{:+.2f}'):>7}")
    return "\n".join(lines)


def _n(by_method: dict) -> int:
    return max((e["n"] for e in by_method.values()), default=0)

def plot_example(path: Path, ex: EvalExample, outputs: dict[str, np.ndarray]) -> None:
    """Spectrograms one above the other: the noisy input, each method's output, the clean reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from scipy.signal import stft

    panels = [("noisy input", ex.noisy)] + [(m, y) for m, y in outputs.items() if m != "noisy"]
    panels.append(("clean reference", ex.clean))
    specs = []
    for _, y in panels:
        f, t, z = stft(y, SAMPLE_RATE, nperseg=512, noverlap=384)
        specs.append(20 * np.log10(np.abs(z) + 1e-8))
    top = max(float(s.max()) for s in specs)
    width = float(np.clip(2.0 + 1.6 * ex.seconds, 6, 18))
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, 1.7 * len(panels) + 0.6), sharex=True, squeeze=False)
    for ax, (title, y), s in zip(axes[:, 0], panels, specs):
        mesh = ax.pcolormesh(t, f / 1000, s, shading="auto", cmap="magma", vmin=top - 80, vmax=top)
        label = title if title == "clean reference" else f"{title}: SI-SDR {si_sdr(ex.clean, y):+.1f} dB"
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_ylabel("kHz", fontsize=8)
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(mesh, ax=axes[:, 0].tolist(), label="dB", shrink=0.8)
    fig.suptitle(f"{ex.condition}: {ex.clip} ({ex.source})", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    os.replace(tmp, path)

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)

def evaluate(data: Path, out: Path, method_names: list[str] | None = None, seed: int = 0,
             clips: int | None = None, progress: bool = True, plots: bool = True, measure=None) -> dict:
    """Run every method on every example; write `out` (and `<stem>_plots/` beside it); return the report."""
    from tqdm import tqdm

    data = check_data_dir(data)
    if Path(out).is_dir():
        raise OutputError(f"--out {out}: is a folder; give the report's file name (e.g. {Path(out) / 'report.json'})")
    for metric_module in ("pesq", "pystoi"):
        try:
            __import__(metric_module)
        except ImportError:
            raise InputError(f"the metrics need the {metric_module} package: pip install 'avcall[eval]'") from None
    p = plan(data, clips)
    methods, notes = build_methods(method_names)
    for m in methods:
        warm_up(m)
    rows: list[dict] = []
    skipped: list[str] = []
    plotted: set[str] = set()
    plot_dir = Path(out).with_name(f"{Path(out).stem}_plots")
    core: int | None = None
    bar = tqdm(total=p.total, unit="example", desc="eval enhance", disable=not progress, file=sys.stderr)
    for ex in examples(data, seed, clips, measure, skipped):
        input_si_sdr = si_sdr(ex.clean, ex.noisy)
        outputs, times = {}, {}
        with one_core() as pinned:
            core = pinned
            for m in methods:
                outputs[m.name], times[m.name] = run_method(m, ex)
        base = outputs.get(GATE_BASE)
        for m in methods:
            row = {"condition": ex.condition, "clip": ex.clip, "method": m.name}
            row.update(score(ex, outputs[m.name], input_si_sdr))  # `noisy`: the same samples, so exactly 0 dB
            row.update(turn_figures(ex, outputs[m.name], base, getattr(m, "gains", None)))
            row.update({"rtf": times[m.name] / ex.seconds, "seconds": ex.seconds, "source": ex.source})
            rows.append(row)
        if plots and ex.condition not in plotted:
            plotted.add(ex.condition)
            plot_example(plot_dir / f"{_safe(ex.condition)}_{_safe(Path(ex.clip).stem)}.png", ex, outputs)
        bar.update(1)
    bar.close()
    first = next(iter(examples(data, seed, 1, measure)), None)
    report = {
        "meta": {
            "data": str(Path(data).resolve()),
            "seed": seed,
            "clips": [v.name for v in p.clips],
            "methods": [{"name": m.name, "needs_lips": bool(m.needs_lips)} | delay_info(m, first) for m in methods],
            "issue_methods_not_registered": [m for m in ISSUE_METHODS if m not in METHODS],
            "conditions": CONDITIONS,
            "speech": [f.name for f in p.speech],
            "noises": [f.name for f in p.noises],
            "pairs": [f"{noisy.name} / {clean.name}" for _, noisy, clean in p.pairs],
            "host": {"cpu": cpu_name(), "cores": os.cpu_count(), "timed_on_core": core},
            "sample_rate": SAMPLE_RATE,
            "notes": NOTES + notes + [f"skipped {s}" for s in skipped],
            "plots": str(plot_dir) if plots and plotted else None,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
        "rows": rows,
        "summary": summarise(rows),
    }
    return write_report(Path(out), report)


# --------------------------------------------------------------------------------------------- CLI
def add_arguments(s) -> None:
    s.add_argument("--data", type=Path, metavar="DIR",
                   help="folder laid out like ../shared/data: talking_faces/, speech/, noise/ (default "
                   "../shared/data)")
    s.add_argument("--out", type=Path, required=True, metavar="OUT", help="report JSON to write")
    s.add_argument("--methods", metavar="LIST",
                   help="comma-separated methods (default: every registered one whose packages import): "
                   + ", ".join(METHODS))
    s.add_argument("--seed", type=int, default=0, help="random seed of the mixtures (default 0)")
    s.add_argument("--clips", type=int, metavar="N", help="only the first N talking-face clips (quick runs)")
    s.add_argument("--no-plots", action="store_true", help="skip the spectrogram plots")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    names = None
    if args.methods is not None:
        names = [n.strip() for n in args.methods.split(",") if n.strip()]
        if not names:
            raise InputError("--methods: give at least one method name")
    if args.clips is not None and args.clips < 1:
        raise InputError("--clips must be at least 1")
    data = args.data if args.data is not None else shared_data_dir()
    report = evaluate(data, args.out, names, seed=args.seed, clips=args.clips, progress=not args.quiet,
                      plots=not args.no_plots)
    names = [m["name"] for m in report["meta"]["methods"]]
    print(format_table(report["summary"], names))
    print(format_turns(report["summary"], names))
    plots = f" and plots in {report['meta']['plots']}" if report["meta"]["plots"] else ""
    print(f"wrote {args.out}{plots}")
    return 0
