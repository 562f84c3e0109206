"""Per-stage telemetry: latency percentiles and frame counts, cheap enough to keep on in every run."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

WINDOW = 2048  # latencies kept per stage: percentiles describe the recent past, memory stays flat


def _percentiles(values: deque[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0}
    a = np.fromiter(values, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


@dataclass
class StageTelemetry:
    """Counts and latencies of one stage.

    latency: from the frame entering the stage's queue to the stage finishing with it (what a frame waits
    in a live call); service: the processing alone (what the stage costs).
    """

    name: str
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0  # frames discarded by latest-frame-wins before the stage saw them
    passed_through: int = 0  # frames the stage let through unprocessed (behind, or failed) and said so
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    service_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def record(self, latency_s: float, service_s: float) -> None:
        self.latency_ms.append(latency_s * 1e3)
        self.service_ms.append(service_s * 1e3)

    def summary(self) -> dict:
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "dropped": self.dropped,
            "passed_through": self.passed_through,
            "latency_ms": _percentiles(self.latency_ms),
            "service_ms": _percentiles(self.service_ms),
        }
