"""The `turns` condition: a call where the user talks and listens, built from a real talking-face clip.

The clip's own voice and face are the target. Each of its silences of MIN_SILENCE_S or more between the words
the recogniser finds in the clean clip is stretched to at least STRETCH_S by playing the middle of that
silence (MARGIN_S away from the words on either side, where the lips have settled) to and fro, its own
frames and sound: the face listening, real frames. Another person's speech (`speech/`) fills each stretched
silence, MARGIN_S away from the target's words on either side, and talks over the target along one stretch of
about DOUBLE_TALK_SHARE of the target's speaking time; each at 0 dB against the target's active level. A
noise of `noise/` lies NOISE_BELOW_DB under it all.

What each 10 ms hop holds is labelled (`TurnsExample.spans`), so that the evaluations can say how much of the
other voice leaks, how much of the target the gate cuts and how late it opens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avcall.pipelines.face.lip_track import LipTrack
from avcall.pipelines.frames import SAMPLE_RATE

from .shared_data import clip_rng, fit_length

HOP = SAMPLE_RATE // 100  # 10 ms
MIN_SILENCE_S = 0.3
STRETCH_S = 2.5
MARGIN_S = 0.15  # between the target's words and the other voice; where the lips have settled
DOUBLE_TALK_SHARE = 0.2
NOISE_BELOW_DB = 20.0
ACTIVE_DB = 35.0  # hops within this of the loudest (99th percentile) count as active speech
LOUD_DB = 20.0  # a hop within this of the active level is part of a word (edges of silences, phrase onsets)


@dataclass
class TurnsExample:
    target: np.ndarray  # the clip's own voice, stretched: the clean reference
    other: np.ndarray  # the other person's speech as mixed in
    noise: np.ndarray
    lips: LipTrack  # the target's lips on the stretched time line (frame i at i / fps s of audio)
    other_only: np.ndarray  # bool per 10 ms hop: only the other voice talks (the stretched silences)
    target_only: np.ndarray  # bool per hop: the target's speech, and no other voice
    onsets: list[float] = field(default_factory=list)  # seconds: the target's phrase starts after a silence
    source: str = ""

    @property
    def mixture(self) -> np.ndarray:
        return (self.target + self.other + self.noise).astype(np.float32)


def hop_db(x: np.ndarray) -> np.ndarray:
    """Energy of each 10 ms hop in dB."""
    n = len(x) // HOP
    e = np.mean(np.square(x[:n * HOP].astype(np.float64).reshape(n, HOP)), axis=1)
    return 10 * np.log10(e + 1e-12)


def active_rms(x: np.ndarray) -> float:
    """RMS over the hops within ACTIVE_DB of the loudest (the speech's level, its pauses aside)."""
    db = hop_db(x)
    if len(db) == 0:
        return 0.0
    active = db > np.percentile(db, 99) - ACTIVE_DB
    return float(np.sqrt(np.mean(10 ** (db[active] / 10))))


def loud_hops(x: np.ndarray) -> np.ndarray:
    """Per 10 ms hop: part of a word. The level over 50 ms within LOUD_DB of the active level and 10 dB clear
    of the recording's own floor (a breath or a bump of room noise is not a word)."""
    db = hop_db(x)
    if len(db) == 0:
        return np.zeros(0, bool)
    smooth = 10 * np.log10(np.convolve(10 ** (db / 10), np.ones(5) / 5, mode="same") + 1e-12)
    return smooth > max(20 * np.log10(active_rms(x) + 1e-12) - LOUD_DB, np.percentile(db, 5) + 10.0)


def silences(words: list[tuple[float, float]], audio: np.ndarray) -> list[tuple[float, float]]:
    """The quiet stretches of MIN_SILENCE_S or more of a clip in which the recogniser finds words. Whisper's
    word times run on from word to word (a pause is given to the word before or after it) and it may stop
    early on a long clip, so the pauses are where the clean voice is quiet (`loud_hops`). The clip's lead-in
    and tail count: a short clip (GRID, LRS2) has no pause of 300 ms between its words, and its turn is before
    or after its one phrase."""
    if not words:
        return []
    loud = loud_hops(audio)
    out, i = [], 0
    while i < len(loud):
        if loud[i]:
            i += 1
            continue
        j = i
        while j < len(loud) and not loud[j]:
            j += 1
        if (j - i) / 100 >= MIN_SILENCE_S:
            out.append((i / 100, j / 100))
        i = j
    return out


def speech_chunks(utterances: list[np.ndarray]) -> np.ndarray:
    """The other person's utterances, their leading and trailing silence cut, one after the other."""
    parts = []
    for x in utterances:
        loud = np.flatnonzero(loud_hops(x))
        if len(loud):
            parts.append(x[loud[0] * HOP:(loud[-1] + 1) * HOP])
    return np.concatenate(parts).astype(np.float32)


def _ping_pong(n: int, length: int) -> np.ndarray:
    """`length` indices into a segment of `n`: 0..n-1, n-1..0, 0..n-1, ..."""
    k = np.arange(length) % (2 * n)
    return np.where(k < n, k, 2 * n - 1 - k)


def build(target: np.ndarray, track: LipTrack, audio_offset: float, words: list[tuple[float, float]],
          others: list[np.ndarray], noise: np.ndarray, seed: int, clip: str) -> TurnsExample | None:
    """The `turns` example of one clip (None when its voice has no silence to stretch). `words`: (start, end)
    seconds of the words the recogniser finds in the clean clip."""
    rng = clip_rng(seed, clip + ":turns")
    target = np.asarray(target, np.float32)
    gaps = silences(words, target)
    if not gaps:
        return None
    # the source time of every output sample: the clip as recorded, each gap's middle played to and fro
    pieces, out_gaps, cursor = [], [], 0
    held = []  # (output start, end, source sample) of the short gaps' middles: one frame, held
    for a, b in gaps:
        ia, ib = int(a * SAMPLE_RATE), int(b * SAMPLE_RATE)
        m0, m1 = ia + int(MARGIN_S * SAMPLE_RATE), ib - int(MARGIN_S * SAMPLE_RATE)
        short = m1 - m0 < int(2 * SAMPLE_RATE / track.fps)
        if short:  # under two frames of settled lips: the middle frame held, its sound (40 ms) to and fro
            c = (ia + ib) // 2
            m0, m1 = c - int(0.02 * SAMPLE_RATE), c + int(0.02 * SAMPLE_RATE)
        stretched = max(int(STRETCH_S * SAMPLE_RATE), ib - ia)
        middle = stretched - (ib - ia) + (m1 - m0)
        pieces.append(np.arange(cursor, m0))
        middle_at = sum(len(p) for p in pieces)
        start_out = middle_at - (m0 - ia)
        pieces.append(m0 + _ping_pong(m1 - m0, middle))
        if short:
            held.append((middle_at, middle_at + middle, c))
        cursor = m1
        out_gaps.append((start_out, start_out + stretched))
    pieces.append(np.arange(cursor, len(target)))
    src = np.concatenate(pieces)
    n = len(src)
    clean = target[src]
    # the lips on the output's time line: output frame k is at k / fps; its source frame at the source time
    fps = track.fps
    frames = int(n / SAMPLE_RATE * fps)
    video_src = src.copy()
    for h0, h1, centre in held:
        video_src[h0:h1] = centre
    src_t = video_src[np.minimum((np.arange(frames) / fps * SAMPLE_RATE).astype(int), n - 1)] / SAMPLE_RATE
    idx = np.clip(np.round((src_t + audio_offset) * fps).astype(int), 0, len(track) - 1)
    lips = track.take(idx)
    # the other person: in each stretched silence, MARGIN_S from the words; and over one run of the target's words
    level = active_rms(clean)
    pool = speech_chunks(others)
    pos = int(rng.integers(len(pool)))
    other = np.zeros(n, np.float32)
    other_only = np.zeros(n // HOP, bool)

    def place(i0: int, i1: int) -> None:
        nonlocal pos
        part = fit_length(pool, i1 - i0, pos)
        pos = (pos + i1 - i0) % len(pool)
        other[i0:i1] = part * (level / max(active_rms(part), 1e-9))

    margin = int(MARGIN_S * SAMPLE_RATE)
    for g0, g1 in out_gaps:
        place(g0 + margin, g1 - margin)
        other_only[-(-(g0 + margin) // HOP):(g1 - margin) // HOP] = True
    # the target's phrases on the output time line: its loud hops, joined over gaps under MIN_SILENCE_S
    loud = loud_hops(clean)[:n // HOP]
    phrases, h = [], 0
    while h < len(loud):
        if not loud[h]:
            h += 1
            continue
        e = h
        while e < len(loud) and (loud[e] or (np.any(loud[e:e + int(MIN_SILENCE_S * 100)]))):
            e += 1
        phrases.append((h * HOP, e * HOP))
        h = e
    speaking = sum(e - s for s, e in phrases)
    double = np.zeros(n // HOP, bool)
    if phrases:  # double talk: from a random phrase's start, about DOUBLE_TALK_SHARE of the speaking time
        k = int(rng.integers(len(phrases)))
        d0 = phrases[k][0]
        d1 = min(phrases[k][1], d0 + int(DOUBLE_TALK_SHARE * speaking))
        place(d0, d1)
        double[d0 // HOP:-(-d1 // HOP)] = True
    noise_part = fit_length(noise, n, int(rng.integers(len(noise))))
    noise_part = noise_part * (level * 10 ** (-NOISE_BELOW_DB / 20) / max(float(np.sqrt(np.mean(noise_part ** 2))),
                                                                        1e-9))
    # the target's own speech, where no other voice talks
    target_only = loud & ~double & ~other_only
    # phrase starts after a stretched silence: the first loud hop from the silence's end on
    onsets = []
    for _, g1 in out_gaps:
        h = g1 // HOP
        later = np.flatnonzero(loud[h:h + 50])
        if len(later):
            onsets.append((h + int(later[0])) / 100)
    peak = float(np.abs(clean + other + noise_part).max(initial=0.0))
    gain = 0.99 / peak if peak > 0.99 else 1.0
    return TurnsExample(clean * gain, other * gain, (noise_part * gain).astype(np.float32), lips, other_only,
                        target_only, onsets, source=f"{len(gaps)} silences stretched")


def recognised_words(audio: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) of each word Whisper tiny.en finds in the clean clip, in 25-s pieces."""
    finals = _finals()
    piece = 25 * SAMPLE_RATE
    out = []
    for i in range(0, len(audio), piece):
        out += [(w.start + i / SAMPLE_RATE, w.end + i / SAMPLE_RATE)
                for w in finals.decode(audio[i:i + piece]).words]
    return out


_FINALS = []


def _finals():
    if not _FINALS:
        from avcall.pipelines.asr_whisper import WhisperFinals

        _FINALS.append(WhisperFinals())
    return _FINALS[0]
