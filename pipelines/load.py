"""Graceful degradation of a live call under load: when the voice falls behind, the work the call can live
without thins out, so the voice stays real time.

A companion runs beside a call app on a busy laptop. `AudioProbe`, placed after the audio path (the
enhancer and the captioner), tells the `LoadShedder` how late each hop leaves it (session clock minus pts);
the shedder smooths that and keeps a level:

  0  everything is done
  1  the avatar renders every other frame; the emotion reader every other hop (2 readings a second)
  2  ... and the overlay (mesh, lips, mood) is not drawn: the frames go out as they came
  3  ... and the face tracker looks at every other video frame (the face found in the last one is held)

It steps up a level once the smoothed lateness has been over `high_s` for `step_s` (a level a `step_s`, so
each has time to act; a hiccup shorter than that, a model's first call, sheds nothing) and back down a level
after each `calm_s` under `low_s`. Audio and video frames themselves are
never dropped here (the queues' own policy stands). What was skipped is counted in the run's incidents
(`shed:<work>`) and each change of level noted (`load_level`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from .clock import SessionClock
from .frames import AudioFrame, Frame
from .stage import Stage
from .telemetry import NO_INCIDENTS, Incidents

# work the call can live without: (the level from which it is skipped, skip 1 in `every`)
WORK = {"avatar_frames": (1, 2), "emotion": (1, 2), "overlay": (2, 1), "video_analysis": (3, 2)}
TOP = max(level for level, _ in WORK.values())


@dataclass
class LoadShedder:
    clock: SessionClock
    high_s: float = 0.05  # hops leaving the audio path this late (smoothed): shed more
    low_s: float = 0.025  # ... this early for `calm_s`: shed less
    step_s: float = 1.0
    calm_s: float = 5.0
    smoothing: float = 0.05  # per hop: about 20 hops (0.2 s)
    incidents: Incidents = field(default_factory=lambda: NO_INCIDENTS, repr=False)  # the run's, from the probe
    level: int = 0
    late_s: float = 0.0
    _changed_at: float = float("-inf")
    _over_since: float | None = None
    _calm_since: float | None = None
    _turns: Counter = field(default_factory=Counter)

    def heard(self, frame: AudioFrame) -> None:
        """A hop leaves the audio path: how late it is moves the level."""
        now = self.clock.now()
        self.late_s += self.smoothing * (now - frame.pts - self.late_s)
        over, calm = self.late_s > self.high_s, self.late_s < self.low_s
        self._over_since = (now if self._over_since is None else self._over_since) if over else None
        self._calm_since = (now if self._calm_since is None else self._calm_since) if calm else None
        if over and self.level < TOP and now - max(self._over_since, self._changed_at) >= self.step_s:
            self._set(self.level + 1, now)
        elif calm and self.level > 0 and now - max(self._calm_since, self._changed_at) >= self.calm_s:
            self._set(self.level - 1, now)

    def skip(self, work: str) -> bool:
        """Whether to skip this unit of `work` (counted when skipped)."""
        level, every = WORK[work]
        if self.level < level:
            return False
        self._turns[work] += 1
        if self._turns[work] % every:
            return False
        self.incidents.count(f"shed:{work}")
        return True

    def _set(self, level: int, now: float) -> None:
        self.level, self._changed_at = level, now
        self.incidents.note("load_level", now, level=level, late_ms=round(1000 * self.late_s, 1))


class AudioProbe(Stage):
    """Passes audio on untouched; tells the shedder how late each hop is here."""

    accepts = (AudioFrame,)
    passthrough = True  # the call goes on without it (see Stage)

    def __init__(self, shedder: LoadShedder, name: str = "load_probe") -> None:
        super().__init__(name)
        self.shedder = shedder

    async def start(self) -> None:
        self.shedder.incidents = self.incidents

    async def process(self, frame: Frame) -> Sequence[Frame]:
        self.shedder.heard(frame)
        return [frame]
