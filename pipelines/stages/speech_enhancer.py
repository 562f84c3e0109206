"""Speech enhancement: each 10 ms audio hop cleaned with the help of the speaker's lips.

AudioFrame and LipFeatures in; LipFeatures passed on, and per audio frame one enhanced AudioFrame with the
input frame's pts and length. The enhancer's output lags its input by one hop of content (it must see the
next hop to finish this one: 20 ms of algorithmic latency in all): the lag is kept, not re-stamped away.
Telemetry says so (`algorithmic_latency_ms`, `output_delay_ms`) next to the usual latency percentiles.

Lips: each hop uses the latest lip features shown by the end of the hop (as training's `lip_stream`),
none when they are older than `max_lip_age_s` or say no face; the enhancer fades between its audio-visual
and audio-only models when the face comes and goes. Live runs use what has arrived; offline runs
(`wait_for_lips`) hold audio until the lips of its time are in, so a slow tracker changes nothing.

`mode` may change at any time (the served page's toggle): "av" (lips used when seen), "ao" (lips ignored:
the audio-only model) or "off" (the audio passed through, with the same one-hop lag so nothing jumps).

Falling behind (live, with a `clock`): a hop that reaches the stage more than `max_behind_hops` hops after
it was captured is passed through unprocessed (the same one-hop lag, the synthesis window fading in and
out of it), counted as `passed_through`: the call never waits for the model.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from avcall.models.avse.runtime_enhancer import (AO_WEIGHTS, AV_WEIGHTS, DELAY, LATENCY_MS, StreamingEnhancer,
                                                 lip_vector)

from ..clock import SessionClock
from ..frames import HOP_SAMPLES, SAMPLE_RATE, AudioFrame, Frame, LipFeatures
from ..stage import Stage
from ..telemetry import StageTelemetry

EPS = 1e-6  # seconds: pts that differ by less are the same instant


@dataclass
class EnhancerTelemetry(StageTelemetry):
    enhanced: int = 0  # hops run through the models
    face_hops: int = 0  # of which with a face (the AV model leading)

    def summary(self) -> dict:
        return super().summary() | {"algorithmic_latency_ms": LATENCY_MS,
                                    "output_delay_ms": 1000 * DELAY / SAMPLE_RATE,
                                    "enhanced": self.enhanced, "face_hops": self.face_hops}


class SpeechEnhancer(Stage):
    accepts = (AudioFrame, LipFeatures)
    passthrough = True  # a hop it throws on goes on as recorded (see Stage)
    late_s = float("inf")  # live lateness: its own rule below passes late hops through in step

    def __init__(self, enhancer: StreamingEnhancer | None = None, *, av_path: str | Path | None = None,
                 ao_path: str | Path | None = None, clock: SessionClock | None = None, max_behind_hops: int = 5,
                 wait_for_lips: bool = False, max_lip_age_s: float = 0.2, name: str = "speech_enhancer") -> None:
        """`enhancer`, or the ONNX files to build one from at start (default: the shipped weights).
        `clock`: the live session clock (None offline: never behind)."""
        super().__init__(name)
        self.telemetry = EnhancerTelemetry(self.name)
        self.enhancer = enhancer
        self.paths = (av_path, ao_path)
        self.clock = clock
        self.max_behind_s = max_behind_hops * HOP_SAMPLES / SAMPLE_RATE
        self.wait_for_lips = wait_for_lips
        self.max_lip_age_s = max_lip_age_s
        self._lips: deque[LipFeatures] = deque()
        self._waiting: deque[AudioFrame] = deque()  # audio held for its lips (wait_for_lips)
        self.mode = "av"

    async def start(self) -> None:
        if self.enhancer is None:
            self.enhancer = await self.in_worker(self._open)
        self.enhancer.reset()  # a new stream

    def _open(self) -> StreamingEnhancer:
        from avcall.export.runtime import require_weights

        av, ao = self.paths
        if av is None and ao is None:
            av, ao = require_weights(AV_WEIGHTS), require_weights(AO_WEIGHTS)
        return StreamingEnhancer(av, ao)

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if isinstance(frame, LipFeatures):
            self._lips.append(frame)
            while not self.wait_for_lips and len(self._lips) > 1 and frame.pts - self._lips[0].pts > 1.0:
                self._lips.popleft()  # no audio coming (mic muted): keep the recent past only
            return [frame, *await self._release(final=False)]
        if self.clock is not None and self.clock.now() - (frame.pts + frame.duration) > self.max_behind_s:
            return self._waiting_then([self._pass(frame)])
        self._waiting.append(frame)
        return await self._release(final=False)

    async def flush(self) -> Sequence[Frame]:
        return await self._release(final=True)

    def _waiting_then(self, frames: list[AudioFrame]) -> list[AudioFrame]:
        """Anything held comes out first, passed through: a frame that is late now was late before too."""
        held = [self._pass(f) for f in self._waiting]
        self._waiting.clear()
        return held + frames

    async def _release(self, final: bool) -> list[AudioFrame]:
        ready = []
        while self._waiting and (final or not self.wait_for_lips or self._lips_known(self._waiting[0])):
            audio = self._waiting.popleft()
            ready.append((audio, self._lips_for(audio.pts + audio.duration)))
        return await self.in_worker(self._enhance, ready) if ready else []

    def _lips_known(self, audio: AudioFrame) -> bool:
        """Whether the lips shown by the end of this hop are in (a later video frame has arrived)."""
        return bool(self._lips) and self._lips[-1].pts >= audio.pts + audio.duration - EPS

    def _lips_for(self, t: float) -> np.ndarray | None:
        """The lip stream's row at audio time t: the latest lip features at or before t, if recent (and
        wanted: none in "ao" mode)."""
        while len(self._lips) >= 2 and self._lips[1].pts <= t + EPS:
            self._lips.popleft()
        if (self.mode != "av" or not self._lips or self._lips[0].pts > t + EPS
                or t - self._lips[0].pts > self.max_lip_age_s):
            return None
        return lip_vector(self._lips[0], self.enhancer.lip_mean)

    def _enhance(self, batch: list[tuple[AudioFrame, np.ndarray | None]]) -> list[AudioFrame]:
        """Blocking: the models, on the stage's worker thread."""
        out = []
        for audio, lips in batch:
            if audio.sample_rate != SAMPLE_RATE:
                out.append(self._pass(audio))
                continue
            if self.mode == "off":
                out.append(_by_hops(audio, self.enhancer.passthrough_hop))
                continue
            try:
                out.append(_by_hops(audio, lambda hop, lips=lips: self.enhancer.process_hop(hop, lips)))
            except Exception as err:  # noqa: BLE001 - a failing model: this hop goes on as recorded, in step
                self.incidents.failed(self.name, err, audio.pts)
                out.append(self._pass(audio))
                continue
            self.telemetry.enhanced += 1
            self.telemetry.face_hops += lips is not None
        return out

    def _pass(self, audio: AudioFrame) -> AudioFrame:
        """The hop unprocessed, lined up like an enhanced one (microseconds: no worker needed)."""
        self.telemetry.passed_through += 1
        self.incidents.count("audio_passthrough_samples", len(audio.samples))
        if audio.sample_rate != SAMPLE_RATE or self.enhancer is None:
            return audio
        return _by_hops(audio, self.enhancer.passthrough_hop)


def _by_hops(audio: AudioFrame, step) -> AudioFrame:
    """`step` over each hop of the frame (normally exactly one; a short last frame is padded with zeros and
    cut back), as a frame with the same pts and length."""
    n = len(audio.samples)
    padded = np.zeros(-(-n // HOP_SAMPLES) * HOP_SAMPLES, np.float32)
    padded[:n] = audio.samples
    out = [step(padded[i:i + HOP_SAMPLES]) for i in range(0, len(padded), HOP_SAMPLES)]
    samples = np.concatenate(out)[:n] if out else padded
    return AudioFrame(pts=audio.pts, samples=samples, sample_rate=audio.sample_rate)
