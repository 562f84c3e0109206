"""One corpus example: a target voice with its lips, optionally a competing talker and noise, in a room
or not. Every random choice comes from the example's own generator, so an example depends only on
(seed, index) and not on which worker made it or in what order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...pipelines.frames import SAMPLE_RATE
from avcall.pipelines.face.lip_track import LIP_FPS, LipTrack
from .example import Example
from avcall.pipelines.face.lip_model import LipModel, Speaker
from .noise import NOISE_KINDS, layer_second_kind, make_noise, mix_at_snr
from avcall.pipelines.face.phonemes import Phone, Timing
from .rooms import random_room, reverberate
from .tts import Voice
from .voices import (SOURCES, Augment, RealUtterance, Utterance, sentences, speak_real, speak_tts,
                     stable_seed)

HEADROOM = 0.9  # the mixture's peak is kept below this


@dataclass(frozen=True)
class Recipe:
    """The knobs of a corpus; the defaults are the shipped recipe."""

    interferer_share: float = 0.5  # examples with a competing talker
    noise_share: float = 0.85  # examples with noise (always when there is no competing talker)
    reverb_share: float = 0.5
    real_share: float = 0.45  # share of real voices among targets and among competing talkers
    sir_db: tuple[float, float] = (0.0, 5.0)  # target over competing talker: the talker is 0 to -5 dB
    snr_db: tuple[float, float] = (-5.0, 20.0)
    layered_noise_share: float = 0.3  # noises with a second kind under the first
    max_seconds: float = 6.0
    pad_s: tuple[float, float] = (0.2, 0.8)  # silence before and after the target speaks

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class VoicePool:
    tts: tuple[Voice, ...]
    real: tuple[RealUtterance, ...]

    def sources(self) -> tuple[str, ...]:
        present = {v.engine for v in self.tts} | ({"real"} if self.real else set())
        return tuple(s for s in SOURCES if s in present)


def pick_source(rng: np.random.Generator, pool: VoicePool, recipe: Recipe) -> str:
    tts_sources = [s for s in pool.sources() if s != "real"]
    if pool.real and (not tts_sources or rng.random() < recipe.real_share):
        return "real"
    return tts_sources[int(rng.integers(len(tts_sources)))]


def speak(rng: np.random.Generator, pool: VoicePool, recipe: Recipe, source: str, real_index: int | None = None,
          exclude_voice: str | None = None) -> Utterance:
    aug = Augment.draw(rng)
    if source == "real":
        utt = pool.real[real_index if real_index is not None else int(rng.integers(len(pool.real)))]
        if exclude_voice == f"real:{utt.speaker}":
            utt = pool.real[(pool.real.index(utt) + 1) % len(pool.real)]
        return speak_real(utt, aug, rng, recipe.max_seconds)
    voices = [v for v in pool.tts if v.engine == source and v.id != exclude_voice] or list(pool.tts)
    voice = voices[int(rng.integers(len(voices)))]
    lines = sentences()
    for _ in range(5):  # long sentences at slow speeds can overrun max_seconds: pick another
        kind, text = lines[int(rng.integers(len(lines)))]
        utt = speak_tts(voice, text, aug)
        if len(utt.audio) <= recipe.max_seconds * SAMPLE_RATE:
            break
    utt.meta["sentence_kind"] = kind
    return utt


def fit_length(audio: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Loop or cut `audio` to n samples from a random phase (for noise beds and competing talkers)."""
    if len(audio) == 0:
        return np.zeros(n, np.float32)
    reps = int(np.ceil((n + len(audio)) / len(audio)))
    start = int(rng.integers(len(audio)))
    return np.tile(audio, reps)[start:start + n]


def power(x: np.ndarray) -> float:
    return float(np.mean(np.asarray(x, np.float64) ** 2))


@dataclass(frozen=True)
class Plan:
    """What the corpus plan fixes for example `index` (roles and real utterances are balanced across
    the corpus, so they are chosen in the plan, not per example)."""

    name: str
    seed: int
    index: int
    target_source: str
    real_index: int | None  # which real utterance, when target_source is "real"
    interferer_source: str | None  # None: no competing talker
    interferer_real_index: int | None
    video: bool


def make_example(plan: Plan, pool: VoicePool, lip_model: LipModel, recipe: Recipe) -> tuple[Example, LipTrack]:
    """The example and the artefact-free lip track (what a renderer should draw)."""
    name, seed, index = plan.name, plan.seed, plan.index
    rng = np.random.default_rng([seed, index])
    target = speak(rng, pool, recipe, plan.target_source, plan.real_index)

    pad = rng.uniform(*recipe.pad_s, size=2)
    lead_in = round(pad[0] * SAMPLE_RATE)
    n = lead_in + len(target.audio) + round(pad[1] * SAMPLE_RATE)
    dry = np.zeros(n, np.float32)
    dry[lead_in:lead_in + len(target.audio)] = target.audio
    shift_s = lead_in / SAMPLE_RATE
    timing = Timing((Phone("sil", 0.0, shift_s),) + tuple(Phone(p.phone, p.start + shift_s, p.end + shift_s)
                                                         for p in target.timing.phones)
                    + (Phone("sil", shift_s + len(target.audio) / SAMPLE_RATE, n / SAMPLE_RATE),),
                    target.timing.words, target.timing.method)

    meta: dict = {"name": name, "seed": [seed, index], "video": plan.video, "seconds": round(n / SAMPLE_RATE, 4),
                  "text": target.text, "timing": timing.to_json(), "target": _describe(target, shift_s)}

    room = None
    if rng.random() < recipe.reverb_share:
        rir, room = random_room(rng)
        target_wet = reverberate(dry, rir)
    else:
        target_wet = dry
    meta["room"] = room.to_json() if room is not None else None

    interferer = np.zeros(n, np.float32)
    with_talker = plan.interferer_source is not None
    if with_talker:
        other = speak(rng, pool, recipe, plan.interferer_source, plan.interferer_real_index,
                      exclude_voice=target.voice)
        talk = fit_length(other.audio, n, rng)
        if room is not None:
            talk = reverberate(talk, random_room(rng)[0])
        sir = float(rng.uniform(*recipe.sir_db))
        interferer = mix_at_snr(target_wet, talk, sir)
        meta["interferer"] = _describe(other, None) | {"sir_db": round(sir, 3)}
    else:
        meta["interferer"] = None

    noise = np.zeros(n, np.float32)
    if not with_talker or rng.random() < recipe.noise_share:
        kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        babble_voices = ([speak(rng, pool, recipe, pick_source(rng, pool, recipe)).audio
                          for _ in range(int(rng.integers(3, 9)))] if kind == "babble" else [])
        bed = make_noise(kind, n, rng, voices=babble_voices)
        kinds = [kind]
        if rng.random() < recipe.layered_noise_share:
            bed, second = layer_second_kind(bed, rng)
            kinds.append(second)
        snr = float(rng.uniform(*recipe.snr_db))
        noise = mix_at_snr(target_wet, bed, snr)
        meta["noise"] = {"kind": "+".join(kinds), "snr_db": round(snr, 3)}
    else:
        meta["noise"] = None

    peak = float(np.max(np.abs(target_wet + interferer + noise)))
    gain = min(1.0, HEADROOM / peak) if peak > 0 else 1.0
    audio = {"target": target_wet * gain, "interferer": interferer * gain, "noise": noise * gain,
             "target_dry": dry * gain}
    audio["mixture"] = audio["target"] + audio["interferer"] + audio["noise"]

    n_frames = int(np.ceil(n / SAMPLE_RATE * LIP_FPS))
    speaker = Speaker.draw(np.random.default_rng(stable_seed(seed, target.voice)), lip_model)
    clean = lip_model.track(timing, n_frames, rng, speaker, artefacts=False)
    lips = lip_model.track(timing, n_frames, np.random.default_rng([seed, index, 1]), speaker, artefacts=True)
    meta["lips"] = {"lead": round(speaker.lead, 4), "gain": round(speaker.gain, 4),
                    "face_missing_share": round(float(1 - lips.face_present.mean()), 4)}
    return Example(name, audio, lips, meta), clean


def _describe(utt: Utterance, offset: float | None) -> dict:
    d = {"source": utt.source, "voice": utt.voice, "text": utt.text, "seconds": round(len(utt.audio) / SAMPLE_RATE, 4),
         "timing_method": utt.timing.method} | utt.meta
    if offset is not None:
        d["offset_s"] = round(offset, 4)
    return d

