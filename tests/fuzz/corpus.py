"""The fuzz set: small seed files in every container the file source opens, made here with PyAV, and
mutants of them (truncated, bytes flipped, ranges zeroed, chunks dropped or repeated, headers garbled,
halves of two files spliced, several of these at once), reproducible from one seed."""

from __future__ import annotations

import random
from pathlib import Path

from tests.conftest import write_media

# name: (video codec or None, audio codec or None, audio rate); tiny on purpose: a fuzz run processes hundreds
SEEDS = {
    "clip.mp4": ("mpeg4", "aac", 48000),
    "clip.mov": ("libx264", "aac", 44100),
    "clip.mkv": ("libx264", "libopus", 48000),
    "clip.webm": ("libvpx", "libopus", 48000),
    "clip.avi": ("mpeg4", "pcm_s16le", 16000),
    "clip.mpg": ("mpeg1video", "mp2", 48000),
    "video.mkv": ("ffv1", None, 0),
    "voice.wav": (None, "pcm_s16le", 16000),
    "voice.flac": (None, "flac", 22050),
    "voice.m4a": (None, "aac", 44100),
    "voice.ogg": (None, "libopus", 48000),
    "voice.mp3": (None, "libmp3lame", 44100),
}


def make_seeds(folder: Path, seconds: float = 0.6) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_media(folder / name, seconds=seconds, size=(64, 48) if video else None, fps=25,
                        video_codec=video or "mpeg4", audio_codec=audio, audio_rate=rate or 48000,
                        channels=1 if audio in ("pcm_s16le", "flac") else 2, flashes=(0.2,))
            for name, (video, audio, rate) in SEEDS.items()]


def _truncate(data: bytes, rng: random.Random, other: bytes) -> bytes:
    return data[: rng.randint(0, len(data) - 1)]


def _flip(data: bytes, rng: random.Random, other: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 24)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _zero(data: bytes, rng: random.Random, other: bytes) -> bytes:
    start, size = rng.randrange(len(data)), rng.choice((16, 64, 512, 4096))
    return data[:start] + bytes(min(size, len(data) - start)) + data[start + size:]


def _drop(data: bytes, rng: random.Random, other: bytes) -> bytes:
    start, size = rng.randrange(len(data)), rng.randint(1, max(1, len(data) // 4))
    return data[:start] + data[start + size:]


def _repeat(data: bytes, rng: random.Random, other: bytes) -> bytes:
    start, size = rng.randrange(len(data)), rng.randint(1, max(1, len(data) // 4))
    return data[:start] + data[start:start + size] * rng.randint(2, 4) + data[start:]


def _header(data: bytes, rng: random.Random, other: bytes) -> bytes:
    n = rng.choice((4, 16, 64, 256))
    return rng.randbytes(n) + data[n:]


def _splice(data: bytes, rng: random.Random, other: bytes) -> bytes:
    return data[: rng.randrange(len(data))] + other[rng.randrange(len(other)):]


def _several(data: bytes, rng: random.Random, other: bytes) -> bytes:
    for kind in rng.sample(("flip", "zero", "drop", "repeat", "header", "truncate"), rng.randint(2, 4)):
        if len(data) < 2:
            break
        data = MUTATIONS[kind](data, rng, other)
    return data


MUTATIONS = {"truncate": _truncate, "flip": _flip, "zero": _zero, "drop": _drop, "repeat": _repeat,
             "header": _header, "splice": _splice, "several": _several}


def make_mutants(seeds: list[Path], folder: Path, count: int, seed: int) -> list[Path]:
    """`count` mutants, each one mutation (truncation most often: the commonest damage in the wild) of a
    seed; the same (seeds, count, seed) always gives the same bytes."""
    rng = random.Random(seed)
    weights = {"truncate": 4, "flip": 2, "zero": 1, "drop": 1, "repeat": 1, "header": 1, "splice": 1, "several": 2}
    names = list(weights)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        source = seeds[i % len(seeds)]
        kind = rng.choices(names, weights=[weights[n] for n in names])[0]
        data = MUTATIONS[kind](source.read_bytes(), rng, rng.choice(seeds).read_bytes())
        path = folder / f"{i:03d}-{kind}-{source.name}"
        path.write_bytes(data)
        out.append(path)
    return out
