"""Taps for the live page's telemetry: they watch frames go by, pass them on unchanged and report what they
see as state events (`Stage.report`).

`LevelMeter`: the audio level in dBFS, smoothed over about 300 ms, reported every REPORT_EVERY_S as
`<name>_db`. `FacePresence`: whether the latest lip features saw a face, reported as `face` when it changes.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..frames import AudioFrame, Frame, LipFeatures
from ..stage import Stage

REPORT_EVERY_S = 0.25


class LevelMeter(Stage):
    accepts = (AudioFrame,)
    passthrough = True

    def __init__(self, name: str, smoothing_s: float = 0.3) -> None:
        super().__init__(name)
        self.smoothing_s = smoothing_s
        self._power: float | None = None
        self._report_at = float("-inf")

    @property
    def level_db(self) -> float | None:
        return None if self._power is None else round(10 * math.log10(self._power + 1e-10), 1)

    async def process(self, frame: Frame) -> Sequence[Frame]:
        power = float(np.mean(np.square(frame.samples, dtype=np.float64))) if len(frame.samples) else 0.0
        a = min(1.0, frame.duration / self.smoothing_s)
        self._power = power if self._power is None else (1 - a) * self._power + a * power
        if frame.pts >= self._report_at:
            self._report_at = frame.pts + REPORT_EVERY_S
            self.report(**{f"{self.name}_db": self.level_db})
        return [frame]


class FacePresence(Stage):
    accepts = (LipFeatures,)
    passthrough = True

    def __init__(self, name: str = "face_presence") -> None:
        super().__init__(name)
        self.present: bool | None = None

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if self.present is not bool(frame.present):
            self.present = bool(frame.present)
            self.report(face=self.present)
        return [frame]
