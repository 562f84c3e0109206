"""`avcall eval enhance`: speech enhancement measured on real recordings.

Conditions (built with a fixed seed from a folder laid out like `../shared/data`):
- for each talking-face clip of `talking_faces/`, its own recorded audio is the target (the clean reference):
  `talker0dB` adds an utterance of `speech/` (another person) at 0 dB SNR, `noise0dB` and `noise5dB` add a
  real noise of `noise/` at 0 and 5 dB; the clip's lip track goes to the methods that read lips;
- `pair`: the real noisy/clean pairs of `noise/` (no video, so no lips).

Methods go through one small interface (`Method`) and one registry (`METHODS`, `register_method`): `noisy`
(the input as is), `noisereduce`, every noise suppressor of pipelines/suppressors by its name (`dtln`, `dfn3`,
`rnnoise`, `avcall-ao`), `avcall` (what `--enhance` runs: the default suppressor and the limiter), and the
lip-guided models under evaluation (`avcall-av`, `avdcnn`) when their weights are there.
Metrics: SI-SDR, its improvement over the input, PESQ wideband, STOI, and the real-time factor on one core.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from avcall.pipelines.errors import InputError, OutputError
from avcall.pipelines.suppressors import DEFAULT as DEFAULT_BACKEND

if TYPE_CHECKING:
    import numpy as np
    from avcall.pipelines.face.lip_track import LipTrack

SAMPLE_RATE = 16_000
CONDITIONS = {
    "talker0dB": "the clip's own audio + an utterance of speech/ (another person) at 0 dB SNR, looped/cut to "
                 "the clip's length",
    "noise0dB": "the clip's own audio + a real noise of noise/ at 0 dB SNR (random offset, looped if short)",
    "noise5dB": "the clip's own audio + the same noise excerpt as noise0dB at 5 dB SNR",
    "pair": "the real noisy/clean pairs of noise/ (VoiceBank-DEMAND p287, a babble pair at 0 dB); no video",
}
CLIP_CONDITIONS = ("talker0dB", "noise0dB", "noise5dB")
# The methods the enhancement issue compares; those not registered are named in the report's meta.
ISSUE_METHODS = ("noisy", "noisereduce", "avcall", "dtln", "dfn3", "rnnoise", "avcall-ao", "avcall-av", "avdcnn")
METRICS = ("si_sdr", "si_sdr_improvement", "pesq", "stoi", "rtf")
VIDEO_SUFFIXES = {".mp4", ".mpg", ".mpeg", ".mkv", ".webm", ".mov", ".avi"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}
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
]


# --------------------------------------------------------------------------------------------- methods
@runtime_checkable
class Method(Protocol):
    """An enhancer under evaluation. `enhance` gets 16 kHz mono float32 and returns as many samples,
    aligned in time with the input (the method compensates its own delay). `lips` is the target's lip track
    at the video's frame rate (frame i is at i / lips.fps - audio_offset seconds of audio time), or None
    where there is no video (the `pair` condition) or when `needs_lips` is False."""

    name: str
    needs_lips: bool

    def enhance(self, audio: np.ndarray, lips: LipTrack | None, audio_offset: float) -> np.ndarray: ...


METHODS: dict[str, Callable[[], Method]] = {}


class MethodUnavailable(Exception):
    """A factory's way to say its method cannot run here (no trained weights yet, ...): the default set
    leaves it out with a note; asked for by name, it is a one-line error."""


def register_method(name: str, factory: Callable[[], Method]) -> None:
    """Make `name` available to `avcall eval enhance --methods`. `factory()` builds the method (import heavy
    packages inside it); it may raise ImportError when the method's packages are missing, or
    MethodUnavailable, and the method is then left out of the default set."""
    METHODS[name] = factory


class Identity:
    """The noisy input as is: the baseline every improvement is measured from."""

    name = "noisy"
    needs_lips = False

    def enhance(self, audio, lips, audio_offset):
        return audio.copy()


class NoiseReduce:
    """noisereduce's spectral gating, non-stationary mode, default settings, at 16 kHz."""

    name = "noisereduce"
    needs_lips = False

    def __init__(self):
        import noisereduce

        self._reduce = noisereduce.reduce_noise

    def enhance(self, audio, lips, audio_offset):
        import numpy as np

        out = self._reduce(y=audio, sr=SAMPLE_RATE, stationary=False)
        return np.asarray(out, np.float32)[:len(audio)]


class SuppressorMethod:
    """A noise suppressor of pipelines/suppressors through its streaming interface (the clip path is the hop
    path in a loop, its delay taken off). `limit`: the limiter after it, as the SpeechEnhancer stage runs it."""

    needs_lips = False

    def __init__(self, name: str, backend: str, limit: bool = False) -> None:
        from avcall.pipelines.suppressors import open_suppressor

        try:
            self.suppressor = open_suppressor(backend)
        except InputError as err:
            raise MethodUnavailable(str(err)) from None
        self.name, self.limit = name, limit

    def enhance(self, audio, lips, audio_offset):
        from avcall.pipelines.audio import Limiter

        out = self.suppressor.enhance_clip(audio)
        return Limiter()(out) if self.limit else out


class AvcallEnhancer:
    """The shipped ONNX enhancers through the same streaming code the live stage runs (one hop at a time)."""

    def __init__(self, name: str, av: str | None, ao: str | None, use_lips: bool = True) -> None:
        from avcall.export.runtime import weights_path
        from avcall.pipelines.nets.enhancer import StreamingEnhancer

        paths = [weights_path(f) if f else None for f in (av, ao)]
        missing = [str(p) for p in paths if p is not None and not p.is_file()]
        if missing:
            raise MethodUnavailable(f"{name}: no trained weights ({', '.join(missing)})")
        self.name, self.needs_lips, self.use_lips = name, use_lips and av is not None, use_lips
        self.enhancer = StreamingEnhancer(*paths)

    def enhance(self, audio, lips, audio_offset):
        return self.enhancer.enhance_clip(audio, lips if self.use_lips else None, audio_offset)


register_method("noisy", Identity)
register_method("noisereduce", NoiseReduce)
register_method("avcall", lambda: SuppressorMethod("avcall", DEFAULT_BACKEND, limit=True))  # what --enhance runs
for _backend in ("dtln", "dfn3", "rnnoise", "avcall-ao"):
    register_method(_backend, lambda b=_backend: SuppressorMethod(b, b))
register_method("avcall-av", lambda: AvcallEnhancer("avcall-av", "avse_av.onnx", "avse_ao.onnx"))
# the AV network alone with the face removed for the whole clip: what it does without lips
register_method("avcall-av-noface", lambda: AvcallEnhancer("avcall-av-noface", "avse_av.onnx", None, use_lips=False))
register_method("avdcnn", lambda: AvcallEnhancer("avdcnn", "avse_avdcnn.onnx", None))


class TargetTalkerMethod:
    """The shipped chain (`avcall`: the suppressor and the limiter) followed by the lip-guided target-talker
    extractor (pipelines/target_talker.py, issue 22) through its streaming path. `design`: `separate` (a
    two-speaker separator, the sync judge selects the face's stream) or `lips` (the separator conditioned on the
    judge's lip embedding). `use_lips=False`: the same with the lip stream zeroed (the face still there), so the
    difference is what the lips bring. Weights: $AVCALL_TSE_WEIGHTS (a folder) if set, else models/weights/."""

    needs_lips = True

    def __init__(self, name: str, design: str, use_lips: bool = True) -> None:
        from avcall.export.runtime import weights_path
        from avcall.pipelines.target_talker import SEPARATOR, TargetTalker

        folder = os.environ.get("AVCALL_TSE_WEIGHTS")
        path = Path(folder) / SEPARATOR[design] if folder else weights_path(SEPARATOR[design])
        if not path.is_file():
            raise MethodUnavailable(f"{name}: no trained weights ({path})")
        self.name = name
        self.chain = SuppressorMethod("avcall", DEFAULT_BACKEND, limit=True)
        self.extractor = TargetTalker(design, path, use_lips=use_lips)

    def enhance(self, audio, lips, audio_offset):
        return self.extractor.extract_clip(self.chain.enhance(audio, None, audio_offset), lips, audio_offset)


register_method("avcall-tse", lambda: TargetTalkerMethod("avcall-tse", "separate"))
register_method("avcall-tse-nolips", lambda: TargetTalkerMethod("avcall-tse-nolips", "separate", use_lips=False))
register_method("avcall-tse2", lambda: TargetTalkerMethod("avcall-tse2", "lips"))
register_method("avcall-tse2-nolips", lambda: TargetTalkerMethod("avcall-tse2-nolips", "lips", use_lips=False))


def build_methods(names: list[str] | None) -> tuple[list[Method], list[str]]:
    """The methods asked for (all registered ones whose packages import, when `names` is None), and notes
    on those left out."""
    notes = []
    if names is not None:
        unknown = [n for n in names if n not in METHODS]
        if unknown:
            raise InputError(f"--methods: unknown method {', '.join(unknown)}; known: {', '.join(METHODS)}")
    methods = []
    for name in (names if names is not None else list(METHODS)):
        try:
            methods.append(METHODS[name]())
        except ImportError as err:
            if names is not None:
                raise InputError(f"method {name} needs a package that is not installed ({err.name or err}); "
                                 "pip install 'avcall[eval]'") from None
            notes.append(f"{name} left out: {err}")
        except MethodUnavailable as err:
            if names is not None:
                raise InputError(f"method {name} cannot run here: {err}") from None
            notes.append(f"{name} left out: {err}")
    if not methods:
        raise InputError("no method to evaluate")
    return methods, notes


# --------------------------------------------------------------------------------------------- metrics
def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019): both signals made zero-mean, the reference scaled to
    its projection of the estimate, 10 log10 of target over residual energy."""
    import numpy as np

    ref = np.asarray(reference, np.float64)
    est = np.asarray(estimate, np.float64)
    if ref.shape != est.shape:
        raise ValueError(f"si_sdr: reference {ref.shape} and estimate {est.shape} differ in length")
    ref = ref - ref.mean()
    est = est - est.mean()
    # a floor at float64 precision: the identity scores ~156 dB, not infinity (the report is strict JSON)
    eps = np.finfo(np.float64).eps * (np.dot(ref, ref) + np.dot(est, est)) + np.finfo(np.float64).tiny
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + eps)
    target = alpha * ref
    residual = est - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(residual, residual) + eps)))


def pesq_wb(reference: np.ndarray, estimate: np.ndarray) -> float | None:
    """PESQ wideband (ITU-T P.862.2) at 16 kHz; None where the library refuses the pair."""
    from pesq import pesq

    try:
        return float(pesq(SAMPLE_RATE, reference.astype("float64"), estimate.astype("float64"), "wb"))
    except Exception:  # noqa: BLE001 -- pesq raises its own errors (too short, no utterance) and C-level ValueErrors
        return None


def stoi_score(reference: np.ndarray, estimate: np.ndarray) -> float | None:
    """STOI (Taal et al. 2011, not extended); None where there are too few speech frames to score."""
    import warnings

    from pystoi import stoi

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi(reference.astype("float64"), estimate.astype("float64"), SAMPLE_RATE, extended=False))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return None
    return value


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

    @property
    def seconds(self) -> float:
        return len(self.noisy) / SAMPLE_RATE


def load_audio(path: Path) -> np.ndarray:
    """A sound file as 16 kHz mono float32."""
    from math import gcd

    import numpy as np
    import soundfile as sf
    from scipy.signal import resample_poly

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = gcd(rate, SAMPLE_RATE)
        mono = resample_poly(mono.astype(np.float64), SAMPLE_RATE // g, rate // g)
    return np.asarray(mono, np.float32)


def check_data_dir(data: Path | None) -> Path:
    if data is None:
        raise InputError("no data folder: ../shared/data is not beside this checkout; give --data DIR "
                         "(with talking_faces/, speech/ and noise/)")
    data = Path(data)
    missing = [sub for sub in ("talking_faces", "speech", "noise") if not (data / sub).is_dir()]
    if missing:
        raise InputError(f"--data {data}: no {', '.join(m + '/' for m in missing)} there (expected the layout "
                         "of ../shared/data: talking_faces/, speech/, noise/)")
    return data


def talking_face_clips(data: Path) -> list[Path]:
    return sorted(p for p in (data / "talking_faces").iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def speech_files(data: Path) -> list[Path]:
    return sorted(p for p in (data / "speech").iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)


def noise_pairs(data: Path) -> list[tuple[str, Path, Path]]:
    """(name, noisy, clean) for each real pair in noise/: `X_noisy_Y` with `X_clean_Y`, and `STEM_..._NdB`
    with `STEM` (the PESQ example's babble mixture and its clean speech)."""
    files = {p.stem: p for p in sorted((data / "noise").iterdir()) if p.suffix.lower() in AUDIO_SUFFIXES}
    pairs = []
    for stem, path in files.items():
        m = re.fullmatch(r"(.*)_noisy_(.*)", stem)
        if m and f"{m[1]}_clean_{m[2]}" in files:
            pairs.append((f"{m[1]}_{m[2]}", path, files[f"{m[1]}_clean_{m[2]}"]))
            continue
        if re.search(r"_-?\d+(\.\d+)?dB$", stem):
            clean = [s for s in files if s != stem and stem.startswith(s + "_")]
            if clean:
                pairs.append((stem, path, files[max(clean, key=len)]))
    return pairs


def noise_files(data: Path) -> list[Path]:
    """The real noises of noise/: every sound there that is not half of a noisy/clean pair (on
    ../shared/data: car, street, two-talker babble, cafe, dishes, exercise bike, speechbrain noise1)."""
    in_pairs = {p for _, noisy, clean in noise_pairs(data) for p in (noisy, clean)}
    return sorted(p for p in (data / "noise").iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p not in in_pairs)


def fit_length(x: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """`n` samples of `x` from `offset`, looping `x` as often as needed."""
    import numpy as np

    if len(x) == 0:
        raise ValueError("fit_length: empty signal")
    idx = (offset + np.arange(n)) % len(x)
    return x[idx]


def scale_to_snr(target: np.ndarray, added: np.ndarray, snr_db: float) -> np.ndarray:
    """`added` scaled so that energy(target) / energy(added) is `snr_db` over the whole length."""
    import numpy as np

    et = float(np.dot(target.astype(np.float64), target.astype(np.float64)))
    ea = float(np.dot(added.astype(np.float64), added.astype(np.float64)))
    if et <= 0 or ea <= 0:
        raise ValueError("scale_to_snr: silent signal")
    return (added.astype(np.float64) * np.sqrt(et / (ea * 10 ** (snr_db / 10)))).astype(np.float32)


def _mix(target: np.ndarray, added: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    noisy = target.astype(np.float64) + added.astype(np.float64)
    peak = float(np.abs(noisy).max(initial=0.0))
    gain = PEAK / peak if peak > PEAK else 1.0
    return (noisy * gain).astype(np.float32), (target.astype(np.float64) * gain).astype(np.float32)


def clip_rng(seed: int, clip: str):
    """The clip's own random stream: the same for a clip whatever other clips are evaluated with it."""
    import numpy as np

    return np.random.default_rng([seed, zlib.crc32(clip.encode())])


def clip_examples(clip: str, target: np.ndarray, lips: LipTrack | None, audio_offset: float,
                  speech: list[tuple[str, np.ndarray]], noises: list[tuple[str, np.ndarray]],
                  seed: int) -> list[EvalExample]:
    """The three mixtures of one clip: talker0dB, noise0dB, noise5dB (the same noise excerpt in both)."""
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
    for video in p.clips:
        measured = measure(video)
        audio = np.asarray(measured.audio, np.float32)
        if len(audio) < SAMPLE_RATE // 4 or float(np.abs(audio).max(initial=0)) < 1e-4:
            if skipped is not None:
                skipped.append(f"{video.name}: no usable audio")
            continue
        yield from clip_examples(video.name, audio, measured.track, float(measured.audio_offset), speech, noises,
                                 seed)
    yield from pair_examples(data)


# --------------------------------------------------------------------------------------------- running
@contextmanager
def one_core() -> Iterator[int | None]:
    """The process pinned to one CPU core and numeric libraries to one thread; both restored after."""
    from .bench import pin_to_one_core

    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(1)
    except ImportError:
        limits = None
    core = pin_to_one_core()
    try:
        yield core
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
        if limits is not None:
            limits.restore_original_limits()


def warm_up(method: Method) -> None:
    """One untimed call, so that lazy loading is not charged to the first example."""
    import numpy as np

    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE // 2).astype(np.float32) * 0.01
    method.enhance(noise, None, 0.0)


def run_method(method: Method, ex: EvalExample) -> tuple[np.ndarray, float]:
    import numpy as np

    lips = ex.lips if method.needs_lips else None
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


def measured_delay(suppressor, audio: np.ndarray, most: int = 4000) -> int:
    """Samples a suppressor's streamed output lags its input by: the peak of their cross-correlation."""
    import numpy as np
    from scipy.signal import correlate

    from avcall.pipelines.frames import HOP_SAMPLES

    x = np.concatenate([audio, np.zeros(most, np.float32)])
    x = x[: len(x) // HOP_SAMPLES * HOP_SAMPLES]
    suppressor.reset()
    y = np.concatenate([suppressor.push(x[i:i + HOP_SAMPLES]) for i in range(0, len(x), HOP_SAMPLES)])
    suppressor.reset()
    c = correlate(y.astype(np.float64), audio.astype(np.float64), mode="full", method="fft")
    return int(np.argmax(c[len(audio) - 1:len(audio) - 1 + most]))


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


def write_report(path: Path, report: dict) -> None:
    """JSON written whole or not at all (a temporary file beside it, then renamed)."""
    from avcall.pipelines.sinks.atomic import write_text_atomic

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
    write_text_atomic(path, json.dumps(report, indent=1, allow_nan=False) + "\n")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def evaluate(data: Path, out: Path, method_names: list[str] | None = None, seed: int = 0,
             clips: int | None = None, progress: bool = True, plots: bool = True, measure=None) -> dict:
    """Run every method on every example; write `out` (and `<stem>_plots/` beside it); return the report."""
    from tqdm import tqdm

    from .bench import cpu_name

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
        for m in methods:
            row = {"condition": ex.condition, "clip": ex.clip, "method": m.name}
            row.update(score(ex, outputs[m.name], input_si_sdr))  # `noisy`: the same samples, so exactly 0 dB
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
    write_report(Path(out), report)
    return report


# --------------------------------------------------------------------------------------------- CLI
def add_parser(commands) -> None:
    e = commands.add_parser("eval", help="evaluate models on the real recordings of ../shared/data",
                            description="Evaluations on real recordings, written as JSON.")
    sub = e.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    s = sub.add_parser("enhance", help="speech enhancement: SI-SDR(i), PESQ-wb, STOI, real-time factor",
                       description="Mix each talking-face clip's own audio with a competing talker at 0 dB and "
                       "a real noise at 0 and 5 dB (fixed seed), take the real noisy/clean pairs, run each "
                       "method and score it against the clean audio. Writes OUT (per-example rows and a "
                       "summary keyed [condition][method]) and spectrogram plots in <OUT stem>_plots/ beside "
                       "it; prints a table.")
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

    from .eval_captions import add_arguments as add_caption_arguments

    c = sub.add_parser("captions", help="live captions: word error rate and latency, raw and enhanced",
                       description="Caption every clip with a transcript (speech/, talking_faces/ GRID and "
                       "LRS2) clean, with real noise at 5 and 0 dB and with a competing talker at 0 dB, raw and "
                       "after the avcall-av enhancer, through the live Captioner. Writes OUT (per-clip rows and a "
                       "summary keyed [condition][raw|enhanced]: wer, partial_latency_s, final_latency_s); "
                       "prints a table.")
    add_caption_arguments(c)

    t = sub.add_parser("talking-face", help="the avatar's mouth against the real speaker's, judged for sync",
                       description="Drive the avatar with each talking-face clip's own audio and compare its mouth "
                       "with what the real speaker's lips did (tracker on the real video); the sync judge on both. "
                       "Methods avcall-voice, phoneme-oracle, static. Writes OUT (summary keyed by method, the "
                       "judge's own accuracy under 'judge', rows).")
    t.add_argument("--data", type=Path, metavar="DIR", help="folder with talking_faces/ (default ../shared/data)")
    t.add_argument("--out", type=Path, required=True, metavar="OUT", help="report JSON to write")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    from .eval_emotion import add_arguments as add_emotion_arguments

    m = sub.add_parser("emotion", help="emotion: face, voice and the fusion methods, UAR per condition",
                       description="Score the shipped face and voice emotion nets and every fusion method (concat, "
                       "avef, tfn, late) on a labelled split: clean, voice with noise at 5 dB, face missing, voice "
                       "missing. Faces and voices are from different people, paired by label. Writes OUT (summary "
                       "keyed [condition][method]: accuracy, uar, macro_f1) and confusion matrices as PNG beside it.")
    add_emotion_arguments(m)

    j = sub.add_parser("sync", help="the sync judge: offsets found on real talking faces shifted by known amounts",
                       description="Move each talking-face clip's audio by 0, +-2, +-5 and +-10 video frames and "
                       "let the sync judge find the offset; writes OUT with the share within one frame of the "
                       "truth (and of the truth plus the clip's own offset) and the rows.")
    j.add_argument("--data", type=Path, metavar="DIR", help="folder with talking_faces/ (default ../shared/data)")
    j.add_argument("--out", type=Path, required=True, metavar="OUT", help="report JSON to write")


def cmd_eval(args) -> int:
    from avcall.models.data.shared_data import shared_data_dir

    if args.eval_command == "emotion":
        from .eval_emotion import run

        return run(args)
    if args.eval_command == "captions":
        from .eval_captions import run

        return run(args)
    if args.eval_command == "talking-face":
        from .eval_talking_face import evaluate_talking_face, format_table as talking_table

        report = evaluate_talking_face(check_data_dir(args.data if args.data is not None else shared_data_dir()),
                                       args.out, progress=not args.quiet)
        print(talking_table(report["summary"]))
        print(f"judge: offset within one frame on {report['judge']['offset_within_1_frame']:.3f} of "
              f"{report['judge']['pairs']} shifted real clips; wrote {args.out}")
        return 0
    if args.eval_command == "sync":
        from .sync import judge_accuracy

        data = check_data_dir(args.data if args.data is not None else shared_data_dir())
        report = judge_accuracy(talking_face_clips(data))
        write_report(args.out, report)
        print(f"offset within one frame: {report['offset_within_1_frame']:.3f} of {report['pairs']} (clip, shift) "
              f"pairs; {report['relative_within_1_frame']:.3f} counting each clip's own offset; wrote {args.out}")
        return 0
    if args.eval_command != "enhance":
        raise InputError(f"unknown evaluation {args.eval_command}")
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
    print(format_table(report["summary"], [m["name"] for m in report["meta"]["methods"]]))
    plots = f" and plots in {report['meta']['plots']}" if report["meta"]["plots"] else ""
    print(f"wrote {args.out}{plots}")
    return 0
