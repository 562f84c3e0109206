"""Live captions: streaming speech recognition on the (enhanced) voice, cut into lines at the speaker's pauses.

AudioFrame and LipFeatures in, passed on untouched; caption Events out (`kind="caption"`), each a `Caption`
as `data`: `partial` ones while a line is spoken (the running hypothesis, at most every `partial_every_s`
and only when it changed), one `final` when the line ends. Times are on the session clock (the audio's pts).

Where a line starts and ends comes from a voice-activity decision per 10 ms hop (`VoiceActivity`): the
hop's level against a running noise floor (on enhanced audio the enhancer's mask has already pushed the
noise down, so this is the mask's energy in effect), gated by the lips when a face is seen: a face whose
mouth has not moved for `lip_quiet_s` is not speaking, so a voice heard then is someone else's. A line
closes after `pause_s` of no speech; once it is `soft_line_s` long, at any short pause (`short_pause_s`,
a breath between phrases); and at `max_line_s` in any case. Speech without pauses still gets finals within
about a second and a half: once the open line is `soft_line_s` long, the words that end more than `tail_s`
before the live edge are committed as a final (the engine's own word times say where) and the rest of the
audio is decoded afresh as the start of the next line. With an engine whose `agreement` is 2 (Whisper), a word
is committed only once two successive decodes agree on it (local agreement), and a resumable engine keeps
its utterance going past the commit, the committed words as its context (see `asr.ResumableEngine`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..asr import DEFAULT_ENGINE, EngineProcess, SpeechEngine, make_engine, resumable
from ..frames import HOP_SAMPLES, SAMPLE_RATE, AudioFrame, Caption, Event, Frame, LipFeatures, Word
from ..lip_gate import caption_gains
from ..stage import Stage
from ..telemetry import StageTelemetry

HOP_S = 0.01
# line lengths (seconds), by whether the engine commits long speech by local agreement (Whisper) or not. Whisper
# is given more: the 1 s before a line's first voiced hop (a soft first word is not cut), a longer pause to end a
# line and longer lines before the first commit check (its words are committed by agreement meanwhile). On the
# dev clips this took its final-line WER at 5 dB of noise from 42% to 31% and at 0 dB from 72% to 56%, finals
# a median 1.0 s after a word (was 0.75 s).
LINES = {False: {"pause_s": 0.4, "preroll_s": 0.3, "soft_line_s": 1.2, "short_pause_s": 0.15, "max_line_s": 6.0,
                 "commit_every_s": 0.5},
         True: {"pause_s": 0.8, "preroll_s": 1.0, "soft_line_s": 2.0, "short_pause_s": 0.6, "max_line_s": 12.0,
                "commit_every_s": 0.25}}


# local agreement between two different decodes: a commit check every 0.25 s saw the same decode twice (a new one
# comes every 0.5 s of audio) and took it for two that agree, so a word rested on one decode. Counting only a new
# decode took the dev clips from 9.4/27.1/52.1% to 6.2/22.4/51.6% WER (clean, 5 dB, 0 dB), finals 1.1 -> 1.3 s
# after a word: docs/captions.md
AGREE_NEW = True
# what the recogniser hears by default: the voice as recorded, or SUPPRESSOR@W (`DryWet`; docs/captions.md)
HEARS = "raw"


class DryWet:
    """What the recogniser hears when it is not the voice as recorded ("raw"): `wet` of a noise suppressor's
    output plus 1 - `wet` of the recorded voice, delayed alike ("rnnoise@0.3"). A suppressor's output alone
    costs Whisper words (what it removes with the noise, its artefacts); a little of it lowers the noise the
    recogniser hears and leaves the voice whole (measured: docs/captions.md). Its own stream of the
    suppressor, on the recogniser's thread: `delay_s` later than the voice."""

    def __init__(self, spec: str) -> None:
        from ..errors import InputError
        from ..suppressors import open_suppressor

        backend, _, share = spec.partition("@")
        try:
            self.wet = float(share) if share else 1.0
        except ValueError:
            self.wet = -1.0
        if not 0 < self.wet <= 1:
            raise InputError(f"captions hear {spec!r}: expected raw, or SUPPRESSOR@W with 0 < W <= 1")
        self.suppressor = open_suppressor(backend)
        self.delay_s = self.suppressor.delay / SAMPLE_RATE
        self._in = np.zeros(0, np.float32)  # less than a hop, waiting for the rest
        self._dry = np.zeros(self.suppressor.delay, np.float32)  # the recorded voice, delayed like the output

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """The mix for the whole hops of what has come in (the rest waits for the next call)."""
        self._in = np.concatenate([self._in, np.asarray(samples, np.float32)])
        n = len(self._in) // HOP_SAMPLES * HOP_SAMPLES
        hops, self._in = self._in[:n], self._in[n:]
        if n == 0:
            return hops
        wet = np.concatenate([self.suppressor.push(hops[i:i + HOP_SAMPLES]) for i in range(0, n, HOP_SAMPLES)])
        line = np.concatenate([self._dry, hops])
        dry, self._dry = line[:n], line[n:]
        return (self.wet * wet + (1 - self.wet) * dry).astype(np.float32)


class _Batch:
    """Work items ("see", lips) / ("hear", samples, pts) for one worker job; closed once the worker takes it."""

    def __init__(self, items: list[tuple]) -> None:
        self._items, self._taken = items, False
        self._lock = threading.Lock()

    def add(self, item: tuple) -> bool:
        with self._lock:
            if not self._taken:
                self._items.append(item)
            return not self._taken

    def trim(self, max_samples: int) -> int:
        """Drop the oldest audio past `max_samples` waiting; returns the samples dropped."""
        with self._lock:
            if self._taken:
                return 0
            waiting = sum(len(i[1]) for i in self._items if i[0] == "hear")
            dropped = 0
            while waiting - dropped > max_samples:
                k = next(j for j, i in enumerate(self._items) if i[0] == "hear")
                dropped += len(self._items.pop(k)[1])
            return dropped

    def take(self) -> list[tuple]:
        with self._lock:
            self._taken = True
            return self._items


@dataclass
class VoiceActivity:
    """Per-hop speech decision from the level over a running noise floor, and the lips when seen."""

    threshold_db: float = 6.0  # above the noise floor
    min_level_db: float = -55.0  # dBFS: quieter is never speech
    floor_rise_db_per_s: float = 3.0  # the floor follows the quietest level down at once, up slowly
    lip_quiet_s: float = 0.6
    lip_motion: float = 0.004  # change in mouth opening (inter-ocular units) that counts as moving
    floor_db: float | None = None
    _last_opening: float | None = None
    _lips_moved_at: float = -1e9
    _face_seen_at: float = -1e9

    def lips(self, f: LipFeatures) -> None:
        if not f.present:
            self._last_opening = None
            return
        self._face_seen_at = f.pts
        if self._last_opening is not None and abs(f.opening - self._last_opening) > self.lip_motion:
            self._lips_moved_at = f.pts
        self._last_opening = f.opening

    def audio(self, samples: np.ndarray, t: float) -> bool:
        level = 10 * np.log10(float(np.mean(np.square(samples, dtype=np.float64))) + 1e-12)
        if self.floor_db is None or level < self.floor_db:
            self.floor_db = level
        else:
            self.floor_db += self.floor_rise_db_per_s * len(samples) / SAMPLE_RATE
        voiced = level > max(self.floor_db + self.threshold_db, self.min_level_db)
        face_seen = t - self._face_seen_at < 0.5
        return voiced and (not face_seen or t - self._lips_moved_at < self.lip_quiet_s)


@dataclass
class CaptionerTelemetry(StageTelemetry):
    lines: int = 0
    partials: int = 0

    def summary(self) -> dict:
        return super().summary() | {"lines": self.lines, "partials": self.partials}


@dataclass
class _Line:
    start: float  # session time of the first sample of the engine's current utterance
    heard_until: float
    speech_at: float  # last hop with speech
    audio: list[np.ndarray]  # every sample since `start` (re-decoded after a commit)
    partial: str = ""
    partial_at: float = -1e9
    checked_at: float = -1e9
    hypothesis: tuple[str, ...] = ()  # the last commit check's words not committed (local agreement)
    decode: int | None = None  # the engine's decode the last commit check saw (its `decodes`)


class Captioner(Stage):
    accepts = (AudioFrame, LipFeatures)
    passthrough = True  # the call goes on without it (see Stage)

    def __init__(self, engine: SpeechEngine | None = None, *, asr: str = DEFAULT_ENGINE, asr_model=None,
                 vad: VoiceActivity | None = None, use_lips: bool = True, pause_s: float | None = None,
                 soft_line_s: float | None = None, short_pause_s: float | None = None,
                 max_line_s: float | None = None, onset_s: float = 0.1, preroll_s: float | None = None,
                 partial_every_s: float = 0.3, commit_every_s: float | None = None, tail_s: float = 0.4,
                 wait_for_lips: bool = False, own_process: bool = False, max_backlog_s: float | None = None,
                 language: str = "en", hears: str = HEARS, agree_new: bool = AGREE_NEW,
                 name: str = "captioner") -> None:
        """`own_process`: run the recogniser named by `asr` in a process of its own (live calls: see
        EngineProcess), not on this stage's thread. `max_backlog_s` (live): audio waiting for the recogniser
        beyond this is skipped, oldest first, and counted (`captions_skipped_samples`): on a starved machine
        the captions miss some speech rather than fall ever further behind. `language`: the recogniser's (a
        Whisper language code, or "auto": detected on the first line). `hears`: "raw", the voice as it comes
        in, or "SUPPRESSOR@W" (`DryWet`). `agree_new`: local agreement counts only a decode newer than the
        last check's (an engine that says which, `decodes`), not the same decode seen twice. The line lengths
        left as None are the engine's (`LINES`): an engine that commits by local agreement (Whisper) gets long
        lines, since it is more accurate over more context and commits long speech word by word anyway."""
        super().__init__(name)
        self.own_process = own_process and engine is None
        # from a file with video: recognise each hop once the lips of its time are in, so the lips' part in
        # the speech decision, and so the captions, do not depend on which thread finished first
        self.wait_for_lips = wait_for_lips
        self._held: deque[AudioFrame] = deque()
        self._lips_until = -1e9
        self.telemetry = CaptionerTelemetry(self.name)
        self.engine, self.spec = engine, (asr, asr_model, language)
        self.vad = vad or VoiceActivity()
        self.mix = None if hears == "raw" else DryWet(hears)
        self._mix_t: float | None = None  # session time of the mix's next sample
        self.use_lips = use_lips
        self.onset_s = onset_s
        self._lines_asked = {"pause_s": pause_s, "preroll_s": preroll_s, "soft_line_s": soft_line_s,
                             "short_pause_s": short_pause_s, "max_line_s": max_line_s,
                             "commit_every_s": commit_every_s}
        self.pause_s = self.preroll_s = self.soft_line_s = self.short_pause_s = self.max_line_s = None
        self.commit_every_s = None
        self.partial_every_s = partial_every_s
        self.tail_s = tail_s
        self.agree_new = agree_new
        self._preroll: deque[tuple[float, np.ndarray]] = deque()
        self._onset = 0  # consecutive speech hops while no line is open
        self._line: _Line | None = None
        self._lines = 0
        self._pending: deque[asyncio.Future] = deque()  # work on the worker thread, in arrival order
        # the work not yet started by the worker: one batch at most, so a slow recogniser leaves one growing
        # list behind it, not a job per 10 ms hop (thousands of objects a minute for the collector to walk)
        self._batch: _Batch | None = None
        self.max_backlog_s = max_backlog_s

    async def start(self) -> None:
        if self.engine is None:
            await self.in_worker(self._open)

    def _open(self) -> None:
        # set here, on the worker, not by the awaiting task: a run cancelled while the engine starts still
        # finds it to close (stop's close is queued behind this on the same thread)
        self.engine = (EngineProcess if self.own_process else make_engine)(*self.spec)

    async def process(self, frame: Frame) -> Sequence[Frame]:
        # The audio is passed on at once and recognised behind it on the worker thread (in arrival order):
        # a slow recogniser delays captions, never the voice. Captions go out as their work completes.
        if isinstance(frame, LipFeatures):
            self._submit(("see", frame))
            self._lips_until = max(self._lips_until, frame.pts)
            while self._held and self._held[0].pts + self._held[0].duration <= self._lips_until:
                self._hear(self._held.popleft())
        elif frame.sample_rate == SAMPLE_RATE:
            if self.wait_for_lips and (self._held or frame.pts + frame.duration > self._lips_until):
                self._held.append(frame)
            else:
                self._hear(frame)
        return [frame, *self._completed()]

    def _hear(self, frame: AudioFrame) -> None:
        # through the lip gate, when there is one: another voice's words are not the user's captions
        samples = frame.samples if frame.gate is None else frame.samples * caption_gains(frame.gate)
        self._submit(("hear", samples, frame.pts))

    def _submit(self, item: tuple) -> None:
        """Into the batch the worker has not started yet, or a new one."""
        if self._batch is None or not self._batch.add(item):
            self._batch = _Batch([item])
            self._pending.append(asyncio.ensure_future(self.in_worker(self._run_batch, self._batch)))
        elif self.max_backlog_s is not None:
            skipped = self._batch.trim(round(self.max_backlog_s * SAMPLE_RATE))
            if skipped:
                self.incidents.count("captions_skipped_samples", skipped)

    def _run_batch(self, batch: _Batch) -> list[Caption]:
        items = batch.take()
        # live, the recogniser is asked for the running words only over a batch's newest audio: one that kept
        # up takes a hop or two a batch; one behind (a slow machine, a recogniser shared by several calls'
        # speech) decodes once for all that waited, and catches up instead of decoding every half second of it
        newest = max((i for i, item in enumerate(items) if item[0] == "hear"), default=-1) \
            if self.max_backlog_s is not None else None
        out = []
        for i, item in enumerate(items):
            out += self.see(item[1]) if item[0] == "see" else self.hear(item[1], item[2],
                                                                       ask=newest is None or i == newest)
        return out

    async def flush(self) -> Sequence[Frame]:
        while self._held:
            self._hear(self._held.popleft())
        if self._pending:
            await asyncio.gather(*self._pending)
        return [*self._completed(), *(self._event(c) for c in await self.in_worker(self.end_line))]

    async def stop(self) -> None:
        for task in self._pending:
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        self._pending.clear()
        await self.in_worker(self._close)

    def _close(self) -> None:
        if isinstance(self.engine, EngineProcess):
            self.engine.close()
            self.engine = None

    def _completed(self) -> list[Event]:
        out = []
        while self._pending and self._pending[0].done():
            out += [self._event(c) for c in self._pending.popleft().result() or ()]
        return out

    def _event(self, caption: Caption) -> Event:
        return Event(pts=caption.emitted, kind="caption", data=caption.to_json())

    # --- the captioner itself (blocking: the stage runs it on its worker thread) ------------------------
    def see(self, lips: LipFeatures) -> list[Caption]:
        """A video frame's lip features (they gate the voice-activity decision)."""
        if self.use_lips:
            self.vad.lips(lips)
        return []

    def hear(self, samples: np.ndarray, pts: float, ask: bool = True) -> list[Caption]:
        """Audio from session time `pts` (16 kHz mono float32): the captions it completes. Without `ask`, the
        engine is not asked for partials or commits over it (a line still ends at its pause)."""
        out = []
        hop = round(HOP_S * SAMPLE_RATE)
        if self.mix is not None:  # the mix comes out `delay_s` late: its times are the voice's, that much earlier
            if self._mix_t is None:
                self._mix_t = pts - self.mix.delay_s
            samples, pts = self.mix(samples), self._mix_t
            self._mix_t += len(samples) / SAMPLE_RATE
        for i in range(0, len(samples), hop):
            part = samples[i:i + hop]
            t = pts + i / SAMPLE_RATE
            out += self._hop(part, t, t + len(part) / SAMPLE_RATE, ask)
        return out

    def _hop(self, samples: np.ndarray, t0: float, t1: float, ask: bool = True) -> list[Caption]:
        if self.max_line_s is None:  # the engine is there now: its line lengths where none were asked for
            lines = LINES[int(getattr(self.engine, "agreement", 1)) > 1]
            for key, value in self._lines_asked.items():
                setattr(self, key, lines[key] if value is None else value)
            self._preroll = deque(self._preroll, maxlen=max(1, round(self.preroll_s / HOP_S)))
        speech = self.vad.audio(samples, t0)
        line = self._line
        if line is None:
            self._preroll.append((t0, samples))
            self._onset = self._onset + 1 if speech else 0
            if self._onset * HOP_S < self.onset_s:
                return []
            self._lines += 1
            preroll = np.concatenate([s for _, s in self._preroll])
            line = self._line = _Line(start=self._preroll[0][0], heard_until=t1, speech_at=t1, audio=[preroll])
            self.engine.begin()
            self.engine.accept(preroll)
            self._preroll.clear()
            return []
        self.engine.accept(samples)
        line.audio.append(samples)
        line.heard_until = t1
        if speech:
            line.speech_at = t1
        quiet, length = t1 - line.speech_at, t1 - line.start
        if (quiet >= self.pause_s or length >= self.max_line_s
                or (length >= self.soft_line_s and quiet >= self.short_pause_s)):
            return self.end_line()
        if not ask:
            return []
        if (length >= self.soft_line_s and t1 - line.checked_at >= self.commit_every_s
                and len(line.partial.split()) >= 3):
            return self._commit(line, t1)
        if t1 - line.partial_at >= self.partial_every_s:
            line.partial_at = t1
            text = self.engine.partial()
            if text and text != line.partial:
                line.partial = text
                self.telemetry.partials += 1
                return [Caption("partial", text, line.start, t1, t1, self._lines)]
        return []

    def _commit(self, line: _Line, t1: float) -> list[Caption]:
        """The words of the open line that end `tail_s` before now (and, with local agreement, that the last
        check heard too) as a final; the rest decoded again (or, by a resumable engine, decoded on)."""
        line.checked_at = t1
        goes_on = resumable(self.engine)
        words = self.engine.words() if goes_on else self.engine.finish()
        keep = [w for w in words if line.start + w.end <= t1 - self.tail_s]
        if int(getattr(self.engine, "agreement", 1)) > 1:
            decode = getattr(self.engine, "decodes", None) if self.agree_new else None
            if decode is not None and decode == line.decode:
                return []  # the decode the last check saw: nothing new to agree with
            line.decode = decode
            agreed = 0
            for new, old in zip(keep, line.hypothesis):
                if _plain(new.text) != old:
                    break
                agreed += 1
            keep = keep[:agreed]
            line.hypothesis = tuple(_plain(w.text) for w in words[agreed:])
        cut = round(keep[-1].end * SAMPLE_RATE) if keep else 0
        if goes_on:
            if not keep:
                return []
            self.engine.advance(cut / SAMPLE_RATE, " ".join(w.text for w in keep))
            line.audio = [np.concatenate(line.audio)[cut:]]
        else:
            audio = np.concatenate(line.audio)[cut:]
            line.audio = [audio]
            self.engine.begin()
            self.engine.accept(audio)
        line.start, line.partial = line.start + cut / SAMPLE_RATE, ""
        if not keep:
            return []
        return [self._final([w.shifted(line.start - cut / SAMPLE_RATE) for w in keep], t1)]

    def end_line(self) -> list[Caption]:
        """Close the open line now (end of stream): its final caption, if it had words."""
        line, self._line, self._onset = self._line, None, 0
        if line is None:
            return []
        words = [w.shifted(line.start) for w in self.engine.finish()]
        return [self._final(words, line.heard_until)] if words else []

    def _final(self, words: list[Word], emitted: float) -> Caption:
        self.telemetry.lines += 1
        return Caption("final", " ".join(w.text for w in words), words[0].start, words[-1].end, emitted,
                       self._lines, tuple(words), getattr(self.engine, "language", None) or "")


def _plain(word: str) -> str:
    """A word as local agreement compares it: case and punctuation aside."""
    return "".join(ch for ch in word.lower() if ch.isalnum() or ch == "'")
