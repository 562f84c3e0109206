"""Lip sync of a live call's outputs: the voice is held back by the picture's current lag.

In a live call video leaves later behind its pts than audio does (tracking and drawing a frame take longer
than enhancing a hop), so a player that plays each as it comes shows the lips after the voice. This stage,
the last before the outputs, holds each audio hop until its pts plus the video's recent lag (the median over
the last second of frames) and lets video through at once: both then leave at the same delay behind their
pts, as a receiver's playout delay does it (WebRTC holds audio back to the video the same way).

The hold follows the video's lag by at most `slew_s` per 10 ms hop (no gap or burst a listener hears), is at
most `max_hold_s` (beyond that the voice stays live and the picture is late), and goes back to zero once no
picture has come for `video_gone_s` (camera off). Held hops leave with the frame that arrives nearest
their time (audio comes every 10 ms), and all of them at the end of the stream.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

import numpy as np

from ..clock import SessionClock
from ..frames import AudioFrame, Frame, VideoFrame
from ..stage import Stage

HALF_HOP_S = 0.005  # a held hop leaves with the arrival nearest its time (one comes every 10 ms)


class AVAlign(Stage):
    accepts = (AudioFrame, VideoFrame)
    passthrough = True  # the call goes on without it (see Stage)

    def __init__(self, clock: SessionClock, *, max_hold_s: float = 0.25, window: int = 30, slew_s: float = 0.002,
                 video_gone_s: float = 0.5, name: str = "av_align") -> None:
        super().__init__(name)
        self.clock = clock
        self.max_hold_s, self.slew_s, self.video_gone_s = max_hold_s, slew_s, video_gone_s
        self.hold_s = 0.0  # how far behind its pts audio leaves now
        self._video_lags: deque[float] = deque(maxlen=window)
        self._video_at: float | None = None  # session time of the last video frame
        self._held: deque[AudioFrame] = deque()

    async def process(self, frame: Frame) -> Sequence[Frame]:
        now = self.clock.now()
        if isinstance(frame, VideoFrame):
            self._video_lags.append(now - frame.pts)
            self._video_at = now
            return [*self._due(now), frame]
        target = 0.0
        if self._video_at is not None and now - self._video_at <= self.video_gone_s:
            target = min(self.max_hold_s, max(0.0, float(np.median(self._video_lags))))
        step = self.slew_s * frame.duration / 0.01
        self.hold_s += max(-step, min(step, target - self.hold_s))
        self._held.append(frame)
        return self._due(now)

    async def flush(self) -> Sequence[Frame]:
        held, self._held = list(self._held), deque()
        return held

    def _due(self, now: float) -> list[AudioFrame]:
        out = []
        while self._held and self._held[0].pts + self.hold_s <= now + HALF_HOP_S:
            out.append(self._held.popleft())
        return out
