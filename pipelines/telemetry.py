"""Per-stage telemetry: latency percentiles and frame counts, cheap enough to keep on in every run; and
the run's incidents: what went wrong (a camera lost, a stage that threw, audio passed through) and what was
done about it."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

WINDOW = 2048  # latencies kept per stage: percentiles describe the recent past, memory stays flat


def percentiles(values: deque[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0}
    # one partial sort for both (a served page asks twice a second for every stage's, on the call's event loop)
    a = np.fromiter(values, dtype=np.float64, count=len(values))
    p50, p95 = np.percentile(a, (50, 95))
    return {"p50": float(p50), "p95": float(p95), "max": float(a.max())}


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
            "latency_ms": percentiles(self.latency_ms),
            "service_ms": percentiles(self.service_ms),
        }


EVENTS_KEPT = 200  # the latest incidents kept with their details; the counts cover the whole run


@dataclass
class Incidents:
    """Faults met during a run and their outcome, as counters (`camera_lost`, `mic_gap_s`,
    `stage_failed:<name>`, `frames_dropped`, `audio_passthrough_samples`, ...) and the latest events.

    Sources report from their device threads, so every method takes a lock.
    """

    counts: Counter = field(default_factory=Counter)
    events: deque = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, kind: str, amount: float = 1) -> None:
        with self._lock:
            self.counts[kind] += amount

    def note(self, kind: str, pts: float | None = None, **data) -> None:
        """An event worth a line in the telemetry (it is counted too)."""
        with self._lock:
            self.counts[kind] += 1
            self.events.append({"kind": kind, "pts": None if pts is None else round(pts, 3), **data})

    def failed(self, stage: str, err: Exception, pts: float | None = None) -> None:
        """A stage threw and what it held went on unprocessed: counted each time, described the first."""
        key = f"stage_failed:{stage}"
        with self._lock:
            first = not self.counts[key]
        if first:
            self.note("stage_failed", pts, stage=stage, error=f"{type(err).__name__}: {err}"[:200])
        self.count(key)

    def summary(self) -> dict:
        with self._lock:
            counts = {k: round(v, 3) if isinstance(v, float) else v for k, v in sorted(self.counts.items())}
            return {"counts": counts, "events": list(self.events)}


class _Discarded(Incidents):
    """Where a source or stage reports before a pipeline gives it its own Incidents (used on its own)."""

    def count(self, kind: str, amount: float = 1) -> None:
        pass

    def note(self, kind: str, pts: float | None = None, **data) -> None:
        pass

    def failed(self, stage: str, err: Exception, pts: float | None = None) -> None:
        pass


NO_INCIDENTS = _Discarded()
