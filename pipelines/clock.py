"""One monotonic session clock: every frame's `pts` is seconds since the session started."""

from __future__ import annotations

import time


class SessionClock:
    """Seconds since `start`, from `time.monotonic()` (never jumps with wall-clock changes)."""

    def __init__(self, start: float | None = None) -> None:
        self.start = time.monotonic() if start is None else start

    def now(self) -> float:
        return time.monotonic() - self.start

    def monotonic_at(self, pts: float) -> float:
        """The `time.monotonic()` value at which session time `pts` falls (for pacing)."""
        return self.start + pts
