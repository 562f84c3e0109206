"""The lip gate stage: every 10 ms, whether the voice heard is the speaker's (pipelines/lip_gate.py decides).

FaceObservation (the active speaker's: its pose), LipFeatures and AudioFrame in. Each AudioFrame goes on with
`gate`: the gain per sample the decision gives, on the raw voice's time. The stage changes no sample itself:
the enhancer multiplies its output by the gate (delayed like its output, so a gated hop is exactly the
suppressor's output where open) and the captioner hears the raw voice times the gate. So the voice path gets
no delay from it: the gate's decision for a hop uses the lips seen up to that hop (live, at most a frame late)
and, for the enhancer's output, the raw voice of its own delay ahead.

When the gate is open and why is reported as state (`lip_gate`: "open" or "holding", `lip_gate_reason`); the
telemetry counts the hops held back by reason. Under load it is the last work shed: it never is (a few numpy
operations a hop), and a late hop is gated all the same (`late_s` infinite), since passing one on ungated
would let another voice in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from ..frames import HOP_SAMPLES, SAMPLE_RATE, AudioFrame, FaceObservation, Frame, LipFeatures
from ..lip_gate import GateDecision, NetScorer, SyncEvidence, default_scorer
from ..stage import Stage
from ..telemetry import StageTelemetry

# a face turned further than this from the camera (the nose's place between the eyes' outer corners, 0.5 when
# frontal) is a profile: its lips say little, and the gate stays open
PROFILE = 0.22
NOSE_TIP, EYE_OUTER_R, EYE_OUTER_L = 1, 33, 263


MAX_SPANS = 500  # held spans kept in the telemetry (the latest)


@dataclass
class GateTelemetry(StageTelemetry):
    hops: int = 0
    held: int = 0  # hops the gate held back (closed)
    reasons: Counter = field(default_factory=Counter)  # hops by the decision's reason
    held_spans: list = field(default_factory=list)  # [start, end] seconds of the voice's time it held back

    def hop(self, t: float, held: bool, reason: str) -> None:
        self.hops += 1
        self.held += held
        self.reasons[reason] += 1
        if held:
            if self.held_spans and abs(self.held_spans[-1][1] - t) < 0.005:
                self.held_spans[-1][1] = round(t + HOP_SAMPLES / SAMPLE_RATE, 2)
            else:
                self.held_spans.append([round(t, 2), round(t + HOP_SAMPLES / SAMPLE_RATE, 2)])
                del self.held_spans[:-MAX_SPANS]

    def summary(self) -> dict:
        return super().summary() | {"hops": self.hops, "held_hops": self.held, "reasons": dict(self.reasons),
                                    "held_spans": self.held_spans}


def frontal(obs: FaceObservation) -> bool:
    """Whether the face looks at the camera enough for its lips to count (not a profile)."""
    if not obs.present or obs.landmarks is None or len(obs.landmarks) <= EYE_OUTER_L:
        return False
    x = obs.landmarks[:, 0]
    span = x[EYE_OUTER_L] - x[EYE_OUTER_R]
    if abs(span) < 1e-6:
        return False
    place = (x[NOSE_TIP] - x[EYE_OUTER_R]) / span
    return PROFILE <= place <= 1.0 - PROFILE


class LipGate(Stage):
    accepts = (FaceObservation, LipFeatures, AudioFrame)
    passthrough = True  # it throws: the hop goes on ungated (open), which never mutes the user
    late_s = float("inf")

    def __init__(self, judge=None, *, enabled: bool = True, wait_for_lips: bool = False, use_judge: bool = True,
                 name: str = "lip_gate") -> None:
        """`judge`: a SyncJudge (opened at start when None and `use_judge`). `wait_for_lips` (offline): gate each
        hop once the lips of its time are in, so that the result does not depend on which thread ran first."""
        super().__init__(name)
        self.telemetry = GateTelemetry(self.name)
        self.enabled = enabled
        self.judge, self.use_judge = judge, use_judge
        self.wait_for_lips = wait_for_lips
        self.decision: GateDecision | None = None
        self._frontal: dict[float, bool] = {}  # pts -> the observation's pose, for its lip features
        self._lips_until = -1e9
        self._held: list[AudioFrame] = []
        self._reported: tuple | None = None

    async def start(self) -> None:
        scorer = await self.in_worker(default_scorer)
        if not isinstance(scorer, NetScorer) and self.judge is None and self.use_judge:  # the logistic one's evidence
            from ..features import available
            from ..nets.sync_judge import SyncJudge

            if available("sync_judge"):  # without the judge: the lips and the voice alone
                self.judge = await self.in_worker(SyncJudge)
        self.decision = GateDecision(SyncEvidence(self.judge) if self.judge is not None else None, scorer)
        self.decision.off = not self.enabled
        self.report(lip_gate="open" if self.enabled else "off", lip_gate_reason="no face")

    def on_control(self, values: dict) -> None:
        if isinstance(values.get("lip_gate"), bool):
            self.enabled = values["lip_gate"]
            self.decision.off = not self.enabled  # switched off, its gains ramp up to 1 (no click)
            self._reported = None
            self.report(lip_gate="open" if self.enabled else "off")

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if isinstance(frame, FaceObservation):
            self._frontal[frame.pts] = frontal(frame)
            while len(self._frontal) > 8:
                self._frontal.pop(next(iter(self._frontal)))
            return [frame]
        if isinstance(frame, LipFeatures):
            self.decision.push_lips(frame, usable=self._frontal.get(frame.pts, True))
            self._lips_until = max(self._lips_until, frame.pts)
            ready = []
            while self._held and self._held[0].pts + self._held[0].duration <= self._lips_until:
                ready.append(self._gate(self._held.pop(0)))
            return [frame, *ready]
        if frame.sample_rate != SAMPLE_RATE:
            return [frame]
        if self.wait_for_lips and (self._held or frame.pts + frame.duration > self._lips_until):
            self._held.append(frame)
            return []
        return [self._gate(frame)]

    async def flush(self) -> Sequence[Frame]:
        ready, self._held = [self._gate(f) for f in self._held], []
        return ready

    def _gate(self, audio: AudioFrame) -> AudioFrame:
        n = len(audio.samples)
        padded = np.zeros(-(-n // HOP_SAMPLES) * HOP_SAMPLES, np.float32)
        padded[:n] = audio.samples
        gains = []
        for i in range(0, len(padded), HOP_SAMPLES):  # decided even when off: it knows the call when switched on
            t = audio.pts + i / SAMPLE_RATE
            gains.append(self.decision.gain(padded[i:i + HOP_SAMPLES], t))
            self.telemetry.hop(t, self.enabled and not self.decision.state.open, self.decision.state.reason)
        state = self.decision.state
        if self.enabled and (state.open, state.reason) != self._reported:
            self._reported = (state.open, state.reason)
            self.report(lip_gate="open" if state.open else "holding", lip_gate_reason=state.reason)
        return replace(audio, gate=np.concatenate(gains)[:n])
