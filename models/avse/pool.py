"""Training data for the enhancer, drawn afresh every step: the corpus's target voices with their lip tracks
(the pool), mixed on the fly with the corpus recipe's competing talkers, noises and rooms. Every step sees
new mixtures, so a 60-minute corpus trains like a much larger one. No torch here.

A pool can be packed into two files (`pool.flac`: every target voice end to end; `pool.npz`: the lip tracks
and the index) to travel to a training machine that has no TTS engines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ...pipelines.frames import SAMPLE_RATE
from avcall.pipelines.face.lip_track import LIP_FPS
from ..data.example import example_names, read_example
from ..data.mix import Recipe, fit_length
from ..data.noise import NOISE_KINDS, layer_second_kind, make_noise, mix_at_snr
from ..data.rooms import random_room, reverberate
from avcall.pipelines.nets.enhancer_features import HOP, lip_stream


@dataclass
class Utterance:
    audio: np.ndarray  # float32, the clean dry target of a corpus example (lips frame i at i / LIP_FPS)
    lips: np.ndarray  # (frames, 40, 2) float16
    opening: np.ndarray
    width: np.ndarray
    present: np.ndarray
    voice: str
    source: str


def pool_from_corpus(corpus: Path) -> list[Utterance]:
    out = []
    for name in example_names(corpus):
        ex = read_example(corpus / "examples", name)
        t = ex.lips
        out.append(Utterance(ex.audio["target_dry"], t.lips.astype(np.float16), t.opening, t.width, t.face_present,
                             ex.meta["target"]["voice"], ex.meta["target"]["source"]))
    return out


def pack_pool(pool: list[Utterance], folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    audio = np.concatenate([u.audio for u in pool])
    sf.write(folder / "pool.flac", np.clip(np.round(audio * 32767), -32767, 32767).astype(np.int16), SAMPLE_RATE,
             subtype="PCM_16")
    lengths = np.array([len(u.audio) for u in pool])
    frames = np.array([len(u.lips) for u in pool])
    np.savez_compressed(folder / "pool.npz", lengths=lengths, frames=frames,
                        lips=np.concatenate([u.lips for u in pool]),
                        opening=np.concatenate([u.opening for u in pool]).astype(np.float16),
                        width=np.concatenate([u.width for u in pool]).astype(np.float16),
                        present=np.concatenate([u.present for u in pool]),
                        voice=np.array([u.voice for u in pool]), source=np.array([u.source for u in pool]))
    return {"utterances": len(pool), "minutes": round(len(audio) / SAMPLE_RATE / 60, 2)}


def load_pool(folder: Path) -> list[Utterance]:
    audio, rate = sf.read(folder / "pool.flac", dtype="float32")
    assert rate == SAMPLE_RATE
    z = np.load(folder / "pool.npz")
    a_ends, f_ends = np.cumsum(z["lengths"]), np.cumsum(z["frames"])
    out = []
    for i in range(len(a_ends)):
        a0, f0 = a_ends[i] - z["lengths"][i], f_ends[i] - z["frames"][i]
        out.append(Utterance(audio[a0:a_ends[i]], z["lips"][f0:f_ends[i]], z["opening"][f0:f_ends[i]].astype(np.float32),
                             z["width"][f0:f_ends[i]].astype(np.float32), z["present"][f0:f_ends[i]],
                             str(z["voice"][i]), str(z["source"][i])))
    return out


class Mixer:
    """Draws (mixture, target, lip stream) crops with the corpus recipe's distributions."""

    def __init__(self, pool: list[Utterance], mean_shape: np.ndarray, recipe: Recipe = Recipe(),
                 crop_s: float = 3.0) -> None:
        self.pool, self.mean_shape, self.recipe = pool, mean_shape, recipe
        self.n = int(crop_s * SAMPLE_RATE) // HOP * HOP

    def _crop(self, u: Utterance, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        n = self.n
        if len(u.audio) <= n:
            return np.concatenate([u.audio, np.zeros(n - len(u.audio), np.float32)]), 0.0
        start = int(rng.integers(0, (len(u.audio) - n) // HOP + 1)) * HOP
        return u.audio[start:start + n], start / SAMPLE_RATE

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = self.recipe
        u = self.pool[int(rng.integers(len(self.pool)))]
        dry, offset = self._crop(u, rng)
        stream = lip_stream(u.lips.astype(np.float32), u.opening, u.width, u.present, LIP_FPS, self.n // HOP,
                            offset=offset, mean_shape=self.mean_shape)
        room = rng.random() < r.reverb_share
        target = reverberate(dry, random_room(rng)[0]) if room else dry
        if not np.any(target):
            target = dry = dry + 1e-4 * rng.standard_normal(self.n).astype(np.float32)
        mixture = target.copy()
        talker = rng.random() < r.interferer_share
        if talker:
            others = [v for v in (self.pool[int(i)] for i in rng.integers(len(self.pool), size=4)) if v.voice != u.voice]
            if others:
                talk = fit_length(others[0].audio, self.n, rng)
                if room:
                    talk = reverberate(talk, random_room(rng)[0])
                if np.any(talk):
                    mixture = mixture + mix_at_snr(target, talk, float(rng.uniform(*r.sir_db)))
        if not talker or rng.random() < r.noise_share:
            kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
            voices = [self.pool[int(i)].audio for i in rng.integers(len(self.pool), size=int(rng.integers(3, 9)))]
            voices = [v for v in voices if np.any(v)]
            if kind == "babble" and len(voices) < 3:
                kind = "pink"
            bed = make_noise(kind, self.n, rng, voices=voices if kind == "babble" else ())
            if rng.random() < r.layered_noise_share:
                bed, _ = layer_second_kind(bed, rng)
            mixture = mixture + mix_at_snr(target, bed, float(rng.uniform(*r.snr_db)))
        gain = 10 ** (rng.uniform(-10, 6) / 20)
        peak = float(np.abs(mixture).max()) * gain
        if peak > 0.99:
            gain *= 0.99 / peak
        return (mixture * gain).astype(np.float32), (target * gain).astype(np.float32), stream

