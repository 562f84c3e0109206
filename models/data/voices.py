"""Where the corpus's voices come from: text-to-speech voices (three engines) and real read speech
(`speech_train/`: LibriSpeech, LJSpeech), each turned into audio + phone timing, and augmented.

Sources, as `avcall corpus stats` counts them: `flite`, `festival`, `espeak` and `real`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter, resample_poly

from ...pipelines.frames import SAMPLE_RATE
from .example import cache_root
from avcall.pipelines.face.phonemes import Phone, Timing, Word
from .tts import Voice, synthesize, to_16k

SENTENCES_PATH = Path(__file__).with_name("sentences.txt")
SOURCES = ("flite", "festival", "espeak", "real")


@dataclass(frozen=True)
class RealUtterance:
    path: Path
    speaker: str
    dataset: str
    transcript: str | None
    duration: float

    @property
    def id(self) -> str:
        return f"real:{self.speaker}:{self.path.stem}"


@dataclass
class Utterance:
    """A voice saying something: audio (16 kHz float32), its timing and where it came from."""

    audio: np.ndarray
    timing: Timing
    text: str
    source: str  # one of SOURCES
    voice: str  # engine:voice or real:speaker
    meta: dict


@lru_cache(maxsize=1)
def sentences() -> tuple[tuple[str, str], ...]:
    rows = [line.split("\t", 1) for line in SENTENCES_PATH.read_text().splitlines() if "\t" in line]
    return tuple((kind, text) for kind, text in rows)


def real_utterances(folder: Path | None) -> tuple[RealUtterance, ...]:
    """The utterances listed in `folder/MANIFEST.tsv` (the speech_train layout), in file order."""
    if folder is None:
        return ()
    manifest = Path(folder) / "MANIFEST.tsv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{folder}: no MANIFEST.tsv (expected the speech_train layout)")
    out = []
    with manifest.open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            out.append(RealUtterance(Path(folder) / row["file"], row["speaker"], row["dataset"],
                                     row["transcript"].strip() or None, float(row["duration_s"])))
    return tuple(out)


def _timing_cache(path: Path, window: tuple[float, float] | None) -> Path:
    key = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
    suffix = "" if window is None else f".{window[0]:.2f}-{window[1]:.2f}"
    return cache_root() / "timing" / f"{key}{suffix}.json"


def real_timing(utt: RealUtterance, audio: np.ndarray, window: tuple[float, float] | None) -> Timing:
    """Phone timing of a real utterance: the transcript aligned over the whole file where there is one,
    else the window's audio recognised and aligned. Cached per file (and window): alignment is slow."""
    from .align import timing_for  # PocketSphinx loads only where real voices are used

    cache = _timing_cache(utt.path, None if utt.transcript else window)
    if cache.exists():
        return Timing.from_json(json.loads(cache.read_text()))
    if utt.transcript:
        timing = timing_for(audio, utt.transcript)
    else:
        a, b = (round(t * SAMPLE_RATE) for t in window)
        timing = timing_for(audio[a:b], None)
    timing = Timing.from_json(timing.to_json())  # rounded as the cache stores it: runs agree byte for byte
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(timing.to_json()))
    return timing


def load_real(utt: RealUtterance) -> np.ndarray:
    audio, rate = sf.read(utt.path, dtype="float32", always_2d=True)
    return to_16k(audio.mean(axis=1), rate)


# --- augmentation --------------------------------------------------------------------------------------
def shift(audio: np.ndarray, factor: float) -> np.ndarray:
    """Plays the audio `factor` times faster: pitch and formants up by `factor`, duration / `factor`."""
    up, down = 200, round(200 * factor)
    return resample_poly(audio, up, down).astype(np.float32) if up != down else audio


def tilt(audio: np.ndarray, db_per_octave: float) -> np.ndarray:
    """A gentle spectral tilt (first-order shelf around 1 kHz): microphones and rooms colour voices."""
    a = np.exp(-2 * np.pi * 1000 / SAMPLE_RATE)
    high = lfilter([1 - a], [1, -a], audio)  # low-passed part
    g = 10 ** (db_per_octave * 3 / 20)  # about 3 octaves of tilt around the corner
    return (high + g * (audio - high)).astype(np.float32)


@dataclass(frozen=True)
class Augment:
    speed: float  # final speaking rate relative to the source (0.9-1.1)
    formant: float  # resampling factor: pitch and formants together (0.94-1.06)
    pitch: float  # engine pitch, -1..1 (TTS only)
    tilt_db: float  # dB per octave
    level_db: float  # RMS in dBFS

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Augment":
        return cls(speed=float(rng.uniform(0.9, 1.1)), formant=float(rng.uniform(0.94, 1.06)),
                   pitch=float(rng.uniform(-1, 1)), tilt_db=float(rng.uniform(-3, 3)),
                   level_db=float(rng.uniform(-32, -18)))

    def to_json(self) -> dict:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


def set_level(audio: np.ndarray, level_db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    return (audio * (10 ** (level_db / 20) / rms)).astype(np.float32) if rms > 0 else audio


def finish(audio: np.ndarray, aug: Augment) -> np.ndarray:
    return set_level(tilt(audio, aug.tilt_db), aug.level_db)


def speak_tts(voice: Voice, text: str, aug: Augment) -> Utterance:
    """The engine speaks at speed/formant (so that the formant shift brings it back to `speed`)."""
    speech = synthesize(voice, text, rate=aug.speed / aug.formant, pitch=aug.pitch)
    audio = shift(speech.audio, aug.formant)
    timing = speech.timing.scaled(len(audio) / max(len(speech.audio), 1))
    return Utterance(finish(audio, aug), timing, text, voice.engine, voice.id, {"augment": aug.to_json()})


def speak_real(utt: RealUtterance, aug: Augment, rng: np.random.Generator, max_seconds: float,
               min_seconds: float = 2.0) -> Utterance:
    """A window of up to `max_seconds` of a real utterance, cut at silences of its timing where it can be."""
    audio = load_real(utt)
    total = len(audio) / SAMPLE_RATE
    length = min(total, max_seconds)
    start = float(rng.uniform(0, total - length)) if total > length else 0.0
    window = (round(start, 2), round(start + length, 2))
    timing = real_timing(utt, audio, window)
    if utt.transcript:  # whole-file timing: move the window to the nearest pauses and cut there
        window = _snap_to_pauses(timing, window, min_seconds)
        timing = _crop(timing, *window)
    a, b = (round(t * SAMPLE_RATE) for t in window)
    piece = audio[a:b]
    factor = aug.speed  # real voices: speed, pitch and formants move together
    shifted = shift(piece, factor)
    text = " ".join(w.word for w in timing.words) or (utt.transcript or "")
    return Utterance(finish(shifted, aug), timing.scaled(len(shifted) / max(len(piece), 1)), text.lower(), "real",
                     f"real:{utt.speaker}", {"augment": aug.to_json(), "file": f"{utt.dataset}/{utt.path.name}",
                                             "window": list(window), "speaker": utt.speaker})


def _snap_to_pauses(timing: Timing, window: tuple[float, float], min_seconds: float) -> tuple[float, float]:
    pauses = [0.5 * (p.start + p.end) for p in timing.phones if p.phone == "sil"] or [window[0], window[1]]
    start = min(pauses, key=lambda t: abs(t - window[0]))
    later = [t for t in pauses if t >= start + min_seconds]
    end = min(later, key=lambda t: abs(t - window[1])) if later else window[1]
    return round(start, 3), round(max(end, start + 0.5), 3)


def _crop(timing: Timing, start: float, end: float) -> Timing:
    phones = tuple(Phone(p.phone, max(p.start, start) - start, min(p.end, end) - start)
                   for p in timing.phones if p.end > start and p.start < end)
    words = tuple(Word(w.word, w.start - start, w.end - start) for w in timing.words
                  if w.start >= start - 0.01 and w.end <= end + 0.01)
    return Timing(phones, words, timing.method)


def stable_seed(*parts: object) -> int:
    """A seed from names, the same on every machine and Python run (hash() is salted)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode())
