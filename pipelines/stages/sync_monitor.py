"""The call's audio-video offset, measured live by the sync judge.

LipFeatures and AudioFrame in, passed on untouched. The last `span_s` of both are kept; every `every_s` the
judge compares them (on the stage's worker thread, behind the frames: it never holds them up) over +-15
video frames. A few seconds of one face say little, so the distance curves add up over the call (the older
ones fading with `memory`), and an Event `kind="sync"` goes out with the offset of the summed curve (ms,
positive: the audio is late) and its confidence, also kept in the stage's telemetry. Stretches with too few
face frames are skipped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..frames import SAMPLE_RATE, VIDEO_FPS as FPS, AudioFrame, Event, Frame, LipFeatures
from ..stage import Stage
from ..telemetry import StageTelemetry



@dataclass
class SyncTelemetry(StageTelemetry):
    offset_ms: float | None = None
    confidence: float | None = None
    judgements: int = 0

    def summary(self) -> dict:
        return super().summary() | {"offset_ms": self.offset_ms, "confidence": self.confidence,
                                    "judgements": self.judgements}


class SyncMonitor(Stage):
    accepts = (LipFeatures, AudioFrame)
    passthrough = True  # the call goes on without it (see Stage)

    # every 3 s each second of the call is judged twice (every 2 s, three times, cost a room call's worker 0.13
    # of a core: `avcall bench cluster`'s cores by part); memory 0.85 a judgement is about 0.9 every 2 s
    def __init__(self, judge=None, *, span_s: float = 6.0, every_s: float = 3.0, min_faces: float = 0.8,
                 memory: float = 0.85, name: str = "sync_monitor") -> None:
        super().__init__(name)
        self.telemetry = SyncTelemetry(self.name)
        self.judge, self.span_s, self.every_s, self.min_faces = judge, span_s, every_s, min_faces
        self._lips: deque[LipFeatures] = deque()
        self._audio: deque[AudioFrame] = deque()
        self._next_at: float | None = None
        self._pending: asyncio.Future | None = None
        self.memory = memory
        self._curve: np.ndarray | None = None  # the summed distance curves (worker thread only)

    async def start(self) -> None:
        if self.judge is None:
            from avcall.pipelines.nets.sync_judge import SyncJudge

            self.judge = await self.in_worker(SyncJudge)

    async def process(self, frame: Frame) -> Sequence[Frame]:
        queue = self._lips if isinstance(frame, LipFeatures) else self._audio
        queue.append(frame)
        # keep the span both streams have reached (offline, one may run ahead of the other), and never more
        # than a few spans of either (the other may have stopped)
        reached = min(self._lips[-1].pts, self._audio[-1].pts) if self._lips and self._audio else frame.pts
        for q in (self._lips, self._audio):
            while q and (reached - q[0].pts > self.span_s or q[-1].pts - q[0].pts > 4 * self.span_s):
                q.popleft()
        out: list[Frame] = [frame]
        if self._pending is not None and self._pending.done():
            result, self._pending = self._pending.result(), None
            if result is not None:
                out.append(result)
        if self._next_at is None:
            self._next_at = frame.pts + self.every_s
        if reached >= self._next_at and self._pending is None and self._lips and self._audio:
            self._next_at = reached + self.every_s
            self._pending = asyncio.ensure_future(self.in_worker(self._judge, list(self._lips), list(self._audio)))
        return out

    async def stop(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            await asyncio.gather(self._pending, return_exceptions=True)

    def _judge(self, lips: list[LipFeatures], audio: list[AudioFrame]) -> Event | None:
        signals = judge_signals(lips, audio, self.span_s)
        if signals is None or signals[3].mean() < self.min_faces:
            return None
        t1 = min(lips[-1].pts, audio[-1].pts + audio[-1].duration)
        curve, frames = self.judge.curve(*signals)
        if frames == 0 or np.isnan(curve).any():
            return None
        weighted = curve * frames
        self._curve = weighted if self._curve is None else self.memory * self._curve + weighted
        total = self._curve / self._curve.mean() * curve.mean()  # back to distances' scale
        best = int(np.argmin(total))
        offset_ms = (best - len(total) // 2) * 1000 / FPS
        confidence = round(float(np.median(total) - total[best]), 4)
        self.telemetry.offset_ms, self.telemetry.confidence = offset_ms, confidence
        self.report(sync_offset_ms=offset_ms)
        self.telemetry.judgements += 1
        return Event(pts=t1, kind="sync", data={"offset_ms": offset_ms, "confidence": confidence, "frames": frames})


def judge_signals(lips: list[LipFeatures], audio: list[AudioFrame], span_s: float, least_s: float = 1.0):
    """The last `span_s` both streams hold, as the judge takes them: the lips resampled to 25 fps on the audio's
    clock (shape, opening, width, present) and the voice over the same time; None under `least_s`."""
    t1 = min(lips[-1].pts, audio[-1].pts + audio[-1].duration)
    t0 = max(lips[0].pts, audio[0].pts, t1 - span_s)
    if t1 - t0 < least_s:
        return None
    pts = np.array([f.pts for f in lips])
    idx = np.clip(np.searchsorted(pts, t0 + np.arange(int((t1 - t0) * FPS)) / FPS, side="right") - 1, 0, len(lips) - 1)
    rows = [lips[i] for i in idx]
    samples = np.concatenate([a.samples for a in audio])
    start = int(round((t0 - audio[0].pts) * SAMPLE_RATE))
    voice = samples[start:start + int(round((t1 - t0) * SAMPLE_RATE))]
    return (np.stack([r.shape for r in rows]), np.array([r.opening for r in rows]), np.array([r.width for r in rows]),
            np.array([r.present for r in rows]), voice)
