"""Speech enhancement: each 10 ms audio hop through a noise suppressor (pipelines/suppressors), then a
limiter, so the voice never clips.

AudioFrame in, per frame one AudioFrame out with the input frame's pts and length. The suppressor's output
lags its input by its `delay` (DTLN: 30 ms; 40 ms of algorithmic latency with the hop): live, that lag is
kept, not re-stamped away, and telemetry states it (`algorithmic_latency_ms`, `output_delay_ms`).
Offline (`compensate_delay`, a file in, files out) the lag is taken off: the output lines up with the input
sample for sample, as DeepFilterNet's offline enhance does.

`mode` may change at any time (the served page's selector): a backend's name, or "off" (the voice passed
through, delayed like the suppressor's output so nothing jumps). The voice fades between the dry (delayed)
and the suppressed signal over FADE samples, never a click; a backend switch crossfades over one hop
between the old chain's output and the new one's (their delays differ by a few ms).

Falling behind (live, with a `clock`): a hop that reaches the stage more than `max_behind_hops` hops after
it was captured is passed through (dry), counted as `passed_through`: the call never waits for the model.
When hops come in time again the suppressor starts afresh and fades in once its output is valid.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..audio import Limiter
from ..clock import SessionClock
from ..frames import HOP_SAMPLES, SAMPLE_RATE, AudioFrame, Frame
from ..stage import Stage
from ..suppressors import DEFAULT, open_suppressor
from ..suppressors.base import Suppressor
from ..telemetry import StageTelemetry

FADE = 320  # samples (20 ms) between the dry and the suppressed voice


@dataclass
class EnhancerTelemetry(StageTelemetry):
    backend: str = ""
    delay: int = 0  # samples the output lags the input by (live; 0 offline, compensated)
    algorithmic_ms: float = 0.0  # the suppressor's algorithmic latency
    enhanced: int = 0  # hops run through the suppressor
    limited: int = 0  # samples the limiter turned down

    def summary(self) -> dict:
        return super().summary() | {"backend": self.backend, "algorithmic_latency_ms": self.algorithmic_ms,
                                    "output_delay_ms": 1000 * self.delay / SAMPLE_RATE,
                                    "enhanced": self.enhanced, "limited_samples": self.limited}


class _Chain:
    """One suppressor, the dry voice delayed to match it, and the weight between them (per stream)."""

    def __init__(self, suppressor: Suppressor) -> None:
        self.suppressor = suppressor
        self.delay = suppressor.delay
        self._dry = np.zeros(self.delay, np.float32)
        self.weight = 0.0  # share of the suppressed voice
        self.produced = 0  # samples out of the suppressor since its reset (the first `delay` are priming)
        self.fresh = True  # the suppressor has not been run since it was reset

    def hop(self, x: np.ndarray, wet_wanted: bool) -> tuple[np.ndarray, bool]:
        """One hop out, and whether the suppressor ran."""
        buf = np.concatenate([self._dry, x])
        dry, self._dry = buf[:HOP_SAMPLES], buf[HOP_SAMPLES:]
        run = wet_wanted or self.weight > 0.0  # a fade out still needs the suppressed voice
        if not run:
            if not self.fresh:
                self.suppressor.reset()  # its history has a gap now: start afresh when wanted again
                self.fresh, self.produced = True, 0
            return dry, False
        wet = self.suppressor.push(x)
        self.fresh = False
        valid = self.produced + np.arange(1, HOP_SAMPLES + 1) > self.delay
        self.produced += HOP_SAMPLES
        target = (valid & wet_wanted).astype(np.float64)
        weight = self._ramp(target)
        return (weight * wet + (1.0 - weight) * dry).astype(np.float32), True

    def _ramp(self, target: np.ndarray) -> np.ndarray:
        step = 1.0 / FADE
        w, out = self.weight, np.empty(len(target))
        if np.all(target == target[0]):  # the usual case: one direction for the whole hop
            sign = 1.0 if target[0] > w else -1.0
            out[:] = np.clip(w + sign * step * np.arange(1, len(target) + 1), min(w, target[0]), max(w, target[0]))
        else:
            for j, t in enumerate(target):
                w = min(t, w + step) if t > w else max(t, w - step)
                out[j] = w
        self.weight = float(out[-1])
        return out


class SpeechEnhancer(Stage):
    accepts = (AudioFrame,)
    passthrough = True  # a hop it throws on goes on as recorded (see Stage)
    late_s = float("inf")  # live lateness: its own rule below passes late hops through in step

    def __init__(self, backend: str | Suppressor = DEFAULT, *, mode: str | None = None,
                 clock: SessionClock | None = None, max_behind_hops: int = 5, compensate_delay: bool = False,
                 name: str = "speech_enhancer") -> None:
        """`backend`: a suppressor's name (opened at start) or a Suppressor. `mode`: what it starts as (the
        backend's name by default, or "off": there, faded out, until switched on). `clock`: the live session
        clock (None offline: never behind). `compensate_delay`: take the suppressor's delay off (offline only)."""
        super().__init__(name)
        self.telemetry = EnhancerTelemetry(self.name)
        self.backend = backend
        self.mode = mode or (backend if isinstance(backend, str) else backend.name)
        self.clock = clock
        self.max_behind_s = max_behind_hops * HOP_SAMPLES / SAMPLE_RATE
        self.compensate_delay = compensate_delay
        self.limiter = Limiter()
        self.chain: _Chain | None = None
        self._pending: deque[AudioFrame] = deque()  # frames whose samples are not out yet (compensate_delay)
        self._out = np.zeros(0, np.float32)
        self._skip = 0  # output samples still to drop (the delay, offline)
        # the lip gate's gains on the way to the output: delayed like the suppressor's output, so each gain meets
        # the samples it was decided for (and the gate decides with the raw voice of the delay ahead)
        self._gate_line = np.ones(0, np.float32)

    async def start(self) -> None:
        suppressor = self.backend
        if isinstance(suppressor, str):
            suppressor = await self.in_worker(open_suppressor, suppressor)
        suppressor.reset()  # a new stream
        self.chain = _Chain(suppressor)
        # the stream starts where it is asked to be: its priming and the dry line's are both silence
        self.chain.weight, self.chain.produced = (0.0 if self.mode == "off" else 1.0), suppressor.delay
        self._skip = self.chain.delay if self.compensate_delay else 0
        self.report(enhance=self.mode)
        self._set_telemetry(suppressor)

    def _set_telemetry(self, suppressor: Suppressor) -> None:
        self.telemetry.backend = suppressor.name
        self.telemetry.delay = 0 if self.compensate_delay else suppressor.delay
        self.telemetry.algorithmic_ms = suppressor.latency_ms

    def on_control(self, values: dict) -> None:
        if isinstance(values.get("enhance"), str):
            self.mode = values["enhance"]  # a backend's name or "off": checked by whoever offers the choice
            self.report(enhance=self.mode)

    async def process(self, frame: Frame) -> Sequence[Frame]:
        behind = self.clock is not None and self.clock.now() - (frame.pts + frame.duration) > self.max_behind_s
        if frame.sample_rate != SAMPLE_RATE:
            return [frame]
        return await self.in_worker(self._enhance, frame, behind)

    async def flush(self) -> Sequence[Frame]:
        if not self._pending:
            return []
        return await self.in_worker(self._drain)

    def _enhance(self, audio: AudioFrame, behind: bool) -> list[AudioFrame]:
        """Blocking: the suppressor, on the stage's worker thread."""
        if self.mode != "off" and self.mode != self.chain.suppressor.name:
            self._switch(self.mode)
        n = len(audio.samples)
        padded = np.zeros(-(-n // HOP_SAMPLES) * HOP_SAMPLES, np.float32)
        padded[:n] = audio.samples
        wanted = self.mode != "off" and not behind
        out = [self._hop(padded[i:i + HOP_SAMPLES], wanted, audio.pts) for i in range(0, len(padded), HOP_SAMPLES)]
        if behind:
            self.telemetry.passed_through += 1
            self.incidents.count("audio_passthrough_samples", n)
        samples = self._limit(np.concatenate(out)[:n] * self._gate_gains(audio.gate, n))
        if not self.compensate_delay:
            return [AudioFrame(pts=audio.pts, samples=samples, sample_rate=audio.sample_rate)]
        self._pending.append(audio)
        return self._release(samples)

    def _hop(self, x: np.ndarray, wanted: bool, pts: float) -> np.ndarray:
        try:
            y, ran = self.chain.hop(x, wanted)
        except Exception as err:  # noqa: BLE001 - a failing model: this hop goes on dry, in step
            self.incidents.failed(self.name, err, pts)
            self.incidents.count("audio_passthrough_samples", HOP_SAMPLES)
            self.chain = getattr(self.chain, "new", self.chain)
            self.chain.weight = 0.0
            y, ran = self.chain.hop(x, False)
        self.chain = getattr(self.chain, "new", self.chain)  # a switch lasts one hop
        self.telemetry.enhanced += ran
        return y

    def _gate_gains(self, gate: np.ndarray | None, n: int) -> np.ndarray:
        """The gains for the next `n` output samples: the lip gate's of `delay` samples ago (a frame without a
        gate is open: the gate switched off, or not in the call)."""
        delay = self.chain.delay
        if len(self._gate_line) != delay:  # a new stream, or a backend of another delay
            last = self._gate_line[-1] if len(self._gate_line) else 1.0
            self._gate_line = np.full(delay, last, np.float32)
        if gate is None:
            gate = np.ones(n, np.float32)
        line = np.concatenate([self._gate_line, gate])
        self._gate_line = line[n:]
        return line[:n]

    def _limit(self, samples: np.ndarray) -> np.ndarray:
        before = self.limiter.reduced
        samples = self.limiter(samples)
        self.telemetry.limited += self.limiter.reduced - before
        return samples

    def _release(self, samples: np.ndarray) -> list[AudioFrame]:
        """Offline: drop the delay's worth at the start, then one frame out per frame in, same pts and length."""
        drop = min(self._skip, len(samples))
        self._skip -= drop
        self._out = np.concatenate([self._out, samples[drop:]])
        ready = []
        while self._pending and len(self._out) >= len(self._pending[0].samples):
            src = self._pending.popleft()
            k = len(src.samples)
            ready.append(AudioFrame(pts=src.pts, samples=self._out[:k].copy(), sample_rate=src.sample_rate))
            self._out = self._out[k:]
        return ready

    def _drain(self) -> list[AudioFrame]:
        """The end of a file: zeros pushed through to bring out the last `delay` samples."""
        ready = []
        while self._pending:
            y = self._hop(np.zeros(HOP_SAMPLES, np.float32), self.mode != "off", self._pending[-1].pts)
            ready += self._release(self._limit(y * self._gate_gains(None, HOP_SAMPLES)))
        return ready

    def _switch(self, name: str) -> None:
        """Another backend (the page's selector): the old chain's hop fades into the new one's."""
        try:
            suppressor = open_suppressor(name)
        except Exception as err:  # noqa: BLE001 - a backend that cannot open: say so, keep the current one
            self.incidents.failed(self.name, err, None)
            self.mode = self.chain.suppressor.name
            return
        old, new = self.chain, _Chain(suppressor)
        self.chain = _SwitchOnce(old, new)
        self._set_telemetry(suppressor)


class _SwitchOnce:
    """For one hop, both chains run and the output fades from the old one's to the new one's; then the new
    chain carries on alone."""

    def __init__(self, old: _Chain, new: _Chain) -> None:
        self.old, self.new = old, new
        self.suppressor = new.suppressor
        self.delay = new.delay

    def hop(self, x: np.ndarray, wet_wanted: bool) -> tuple[np.ndarray, bool]:
        a, _ = self.old.hop(x, wet_wanted)
        b, ran = self.new.hop(x, wet_wanted)
        fade = np.arange(1, HOP_SAMPLES + 1, dtype=np.float32) / HOP_SAMPLES
        return (1.0 - fade) * a + fade * b, ran
