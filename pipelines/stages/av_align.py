"""Lip sync of a live call's outputs: the voice is held back by the picture's current lag, and the picture by
the voice's when the voice is the later one.

In a live call video leaves later behind its pts than audio does (tracking and drawing a frame take longer
than enhancing a hop), so a player that plays each as it comes shows the lips after the voice. This stage,
the last before the outputs, holds each audio hop until its pts plus the video's recent lag (the median over
the last second of frames) and lets video through at once: both then leave at the same delay behind their
pts, as a receiver's playout delay does it (WebRTC holds audio back to the video the same way).

The hold follows the video's lag by at most `slew_s` per 10 ms hop (no gap or burst a listener hears), is at
most `max_hold_s` (beyond that the voice stays live and the picture is late), and goes back to zero once no
picture has come for `video_gone_s` (camera off). Held hops leave with the frame that arrives nearest
their time (audio comes every 10 ms), and all of them at the end of the stream.

On a starved machine it is the voice that comes late (the picture's optional work is shed, see load.py, the
voice's never is): then each frame is held to the voice's recent lag (the median over the last second of
hops, at most `max_hold_s`), as a receiver delays whichever stream is ahead.
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
        self._audio_lags: deque[float] = deque(maxlen=100)  # a second of hops, as they arrive
        self._video_at: float | None = None  # session time of the last video frame
        self._audio_at: float | None = None  # ... and audio hop
        self._held: deque[AudioFrame] = deque()
        self._held_video: deque[VideoFrame] = deque()

    async def process(self, frame: Frame) -> Sequence[Frame]:
        now = self.clock.now()
        if isinstance(frame, VideoFrame):
            self._video_lags.append(now - frame.pts)
            self._video_at = now
            self._held_video.append(frame)
            return [*self._due(now), *self._due_video(now)]
        self._audio_lags.append(now - frame.pts)
        self._audio_at = now
        target = 0.0
        if self._video_at is not None and now - self._video_at <= self.video_gone_s:
            target = min(self.max_hold_s, max(0.0, float(np.median(self._video_lags))))
        step = self.slew_s * frame.duration / 0.01
        self.hold_s += max(-step, min(step, target - self.hold_s))
        self._held.append(frame)
        return [*self._due(now), *self._due_video(now)]

    async def flush(self) -> Sequence[Frame]:
        held, self._held = [*self._held, *self._held_video], deque()
        self._held_video = deque()
        return held

    def _due_video(self, now: float) -> list[VideoFrame]:
        hold = 0.0  # no voice (muted): the picture is not held
        if self._audio_at is not None and now - self._audio_at <= self.video_gone_s:
            hold = min(self.max_hold_s, float(np.median(self._audio_lags)))
        out = []
        while self._held_video and self._held_video[0].pts + hold <= now + HALF_HOP_S:
            out.append(self._held_video.popleft())
        return out

    def _due(self, now: float) -> list[AudioFrame]:
        out = []
        while self._held and self._held[0].pts + self.hold_s <= now + HALF_HOP_S:
            out.append(self._held.popleft())
        return out
