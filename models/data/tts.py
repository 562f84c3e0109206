"""Text-to-speech voices with per-phone timing: flite, festival and espeak-ng (Debian packages).

Every engine reports where each phone ends (flite `-psdur`, festival's Segment relation) or starts
(espeak-ng's phoneme events through libespeak-ng), so the timing is the engine's own, not a guess.
Audio comes back as 16 kHz mono float32; phones as the project's ARPAbet set (phonemes.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from ...pipelines.errors import InputError
from ...pipelines.frames import SAMPLE_RATE
from avcall.pipelines.face.phonemes import SILENCE, Phone, Timing, arpabet

FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
ESPEAK_VOICES = ("en-us", "en", "en-gb-scotland", "en-us+f1", "en-us+f2", "en-us+f3", "en-us+f4", "en-us+f5",
                 "en-us+m1", "en-us+m2", "en-us+m3", "en-us+m4", "en-us+m5", "en-us+m6", "en-us+m7")


@dataclass(frozen=True)
class Voice:
    engine: str  # flite, festival, espeak
    name: str

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class Speech:
    audio: np.ndarray  # 16 kHz mono float32
    timing: Timing


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return audio.astype(np.float32)
    g = gcd(rate, SAMPLE_RATE)
    return resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)


def clean_text(text: str) -> str:
    """What every engine reads safely: no quotes, brackets or backslashes."""
    return re.sub(r"\s+", " ", re.sub(r"[\"\\(){}\[\]<>|;]", " ", text)).strip()


def _from_ends(ends: list[tuple[str, float]], duration: float, method: str) -> Timing:
    phones, start = [], 0.0
    for name, end in ends:
        end = min(end, duration)
        if end > start:
            phones.append(Phone(arpabet(name), start, end))
            start = end
    if start < duration:
        phones.append(Phone(SILENCE, start, duration))
    return Timing(tuple(phones), method=method)


# --- flite -------------------------------------------------------------------------------------------
def flite(voice: str, text: str, rate: float = 1.0, f0: float | None = None) -> Speech:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        cmd = ["flite", "-voice", voice, "-psdur", "--setf", f"duration_stretch={1 / rate:.4f}"]
        if f0 is not None:
            cmd += ["--setf", f"int_f0_target_mean={f0:.1f}"]
        out = subprocess.run(cmd + ["-t", clean_text(text), "-o", str(wav)], capture_output=True, text=True,
                             check=True, timeout=60).stdout
        audio, sr = sf.read(wav, dtype="float32")
    audio = to_16k(audio, sr)
    ends = [(p, float(t)) for p, t in re.findall(r"(\S+?):([\d.]+)", out)]
    return Speech(audio, _from_ends(ends, len(audio) / SAMPLE_RATE, "tts:flite"))


# --- festival ----------------------------------------------------------------------------------------
_FESTIVAL_SCRIPT = """({voice_fn})
(Parameter.set 'Duration_Stretch {stretch:.4f})
(set! utt (SynthText "{text}"))
(utt.save.wave utt "{wav}" 'riff)
(mapcar (lambda (s) (format t "SEG %s %f\\n" (item.name s) (item.feat s "end"))) (utt.relation.items utt 'Segment))
"""


def festival(voice: str, text: str, rate: float = 1.0) -> Speech:
    with tempfile.TemporaryDirectory() as tmp:
        wav, script = Path(tmp) / "out.wav", Path(tmp) / "say.scm"
        script.write_text(_FESTIVAL_SCRIPT.format(voice_fn=f"voice_{voice}", stretch=1 / rate,
                                                  text=clean_text(text), wav=wav))
        out = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, check=True,
                             timeout=120).stdout
        if not wav.exists():
            raise RuntimeError(f"festival {voice} wrote no audio for {text!r}")
        audio, sr = sf.read(wav, dtype="float32")
    audio = to_16k(audio, sr)
    ends = [(p, float(t)) for p, t in re.findall(r"^SEG (\S+) ([\d.]+)$", out, re.M)]
    return Speech(audio, _from_ends(ends, len(audio) / SAMPLE_RATE, "tts:festival"))


# --- espeak-ng ---------------------------------------------------------------------------------------
# espeak-ng's English mnemonics -> ARPAbet; matched longest first, after stress and length marks go.
_ESPEAK_PHONES = {
    "p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "g": "g", "f": "f", "v": "v", "T": "th", "D": "dh",
    "s": "s", "z": "z", "S": "sh", "Z": "zh", "tS": "ch", "dZ": "jh", "h": "hh", "m": "m", "n": "n", "N": "ng",
    "l": "l", "r": "r", "w": "w", "j": "y", "x": "k", "?": "t", "t#": "d", "d#": "d", "z#": "z", "C": "hh",
    "a": "ae", "aa": "aa", "a#": "ax", "A": "aa", "A:": "aa", "A@": "aa", "aI": "ay", "aI@": "ay", "aI3": "ay",
    "aU": "aw", "aU@": "aw", "e": "eh", "e@": "eh", "eI": "ey", "E": "eh", "I": "ih", "I2": "ih", "I#": "ih",
    "i": "iy", "i:": "iy", "i@": "iy", "i@3": "iy", "0": "aa", "O": "ao", "O:": "ao", "O@": "ao", "o@": "ao",
    "oU": "ow", "o": "ow", "OI": "oy", "u": "uw", "u:": "uw", "U": "uh", "U@": "uh", "V": "ah", "@": "ax",
    "@2": "ax", "@5": "ax", "@L": "l", "3": "er", "3:": "er", "@r": "er", "a2": "ax", "_": SILENCE,
    "_:": SILENCE, "_!": SILENCE, "_^_": SILENCE, "": SILENCE,
}


def espeak_phone(mnemonic: str) -> str:
    m = mnemonic.replace("'", "").replace(",", "").replace("%", "").replace("=", "").replace(";", "")
    while m and m not in _ESPEAK_PHONES:
        m = m[:-1]  # drop trailing modifiers (length marks, variants) until a known phone is left
    return _ESPEAK_PHONES.get(m, SILENCE)


_SAY = Path(__file__).with_name("espeak_say.py")


def espeak(voice: str, text: str, rate: float = 1.0, pitch: int = 50) -> Speech:
    """libespeak-ng, through its phoneme events. Each utterance is spoken by a fresh process with address
    randomisation off (espeak_say.py): the library carries state between utterances and reads memory it
    did not set, so the same call in a long-lived process can sound slightly different each time."""
    cmd = [sys.executable, "-I", "-S", str(_SAY), voice, str(round(175 * rate)), str(pitch)]
    if shutil.which("setarch"):
        cmd = ["setarch", platform.machine(), "-R"] + cmd
    run = subprocess.run(cmd, input=clean_text(text).encode("utf-8"), capture_output=True, timeout=60)
    if run.returncode == 2:
        raise InputError(run.stderr.decode().strip())
    if run.returncode != 0:
        raise RuntimeError(f"espeak-ng failed: {run.stderr.decode().strip()[:200]}")
    header, _, raw = run.stdout.partition(b"\n")
    info = json.loads(header)
    sr = info["rate"]
    audio = np.frombuffer(raw, np.int16).astype(np.float32) / 32768
    duration = len(audio) / sr
    # phoneme events carry start samples: each phone ends where the next one starts
    starts = [(espeak_phone(name), s / sr) for s, name in info["events"]]
    ends = [(starts[i][0], starts[i + 1][1]) for i in range(len(starts) - 1)]
    if starts:
        ends = [(SILENCE, starts[0][1])] + ends + [(starts[-1][0], duration)]
    return Speech(to_16k(audio, sr), _from_ends(ends, duration, "tts:espeak-ng"))


# --- all voices --------------------------------------------------------------------------------------
def _festival_has(voice: str) -> bool:
    return any(Path(root).glob(f"*/{voice}") for root in ("/usr/share/festival/voices",))


@lru_cache(maxsize=1)
def available_voices() -> tuple[Voice, ...]:
    """Every voice whose engine is installed, in a fixed order."""
    voices: list[Voice] = []
    if shutil.which("flite"):
        voices += [Voice("flite", v) for v in FLITE_VOICES]
    if shutil.which("festival"):
        voices += [Voice("festival", v) for v in FESTIVAL_VOICES if _festival_has(v)]
    if ctypes.util.find_library("espeak-ng"):
        voices += [Voice("espeak", v) for v in ESPEAK_VOICES]
    return tuple(voices)


def synthesize(voice: Voice, text: str, rate: float = 1.0, pitch: float = 0.0) -> Speech:
    """`rate` > 1 speaks faster; `pitch` in -1..1 moves the voice's pitch where the engine allows it."""
    if voice.engine == "flite":
        base = 100.0 if voice.name in ("kal", "kal16", "awb", "rms") else 170.0
        return flite(voice.name, text, rate, f0=base * 2 ** (pitch * 3 / 12))
    if voice.engine == "festival":
        return festival(voice.name, text, rate)
    if voice.engine == "espeak":
        return espeak(voice.name, text, rate, pitch=int(np.clip(50 + 30 * pitch, 0, 99)))
    raise ValueError(f"unknown engine {voice.engine!r}")
