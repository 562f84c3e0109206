"""The mood indicator: the latest emotion reading drawn in the top-right corner of the video (the live window,
annotated.mp4): "emotion reading: on", the leading emotion and a confidence bar.

Emotion events (from the EmotionReader) and video frames reach this stage separately; a frame shows the
newest reading at or before its pts (one reader hop of slack: the voice runs a little ahead of the picture)
that is at most `stale_s` old. The indicator is driven by the readings alone: while the reader is off no
event comes and nothing is drawn, so the label is on screen exactly while emotion is being read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from ..frames import Event, Frame, VideoFrame
from ..sinks.emotion import COLOURS
from ..stage import Stage

STALE_S = 1.0  # the reader emits every 0.25 s: a reading older than this means it stopped
SLACK_S = 0.25
LABEL = "emotion reading: on"
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Mood:
    pts: float
    leading: str
    confidence: float

    @classmethod
    def from_event(cls, event: Event) -> Mood:
        return cls(event.pts, str(event.data.get("leading", "")), float(event.data.get("confidence", 0.0)))


def _bgr(hex_colour: str) -> tuple[int, int, int]:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return b, g, r


def draw_mood(image: np.ndarray, mood: Mood) -> np.ndarray:
    """A copy of `image` with the indicator in a darkened box at the top right, sized to the frame's width."""
    out = image.copy()
    h, w = out.shape[:2]
    s = min(2.0, max(0.7, w / 640))  # below 0.7 the text is unreadable
    box_w, box_h, margin = int(200 * s), int(64 * s), int(8 * s)
    x0, y0 = max(0, w - box_w - margin), min(margin, h)
    x1, y1 = min(w, x0 + box_w), min(h, y0 + box_h)
    out[y0:y1, x0:x1] = (out[y0:y1, x0:x1] * 0.35).astype(out.dtype)
    pad, thick = int(8 * s), max(1, round(s))
    cv2.putText(out, LABEL, (x0 + pad, y0 + int(17 * s)), FONT, 0.45 * s, (120, 230, 120), thick, cv2.LINE_AA)
    colour = _bgr(COLOURS.get(mood.leading, "#ffffff"))
    cv2.putText(out, mood.leading or "-", (x0 + pad, y0 + int(38 * s)), FONT, 0.6 * s, colour, thick + 1,
                cv2.LINE_AA)
    cv2.putText(out, f"{100 * mood.confidence:.0f}%", (x0 + int(140 * s), y0 + int(38 * s)), FONT, 0.5 * s,
                (235, 235, 235), thick, cv2.LINE_AA)
    bar_x0, bar_y0, bar_x1, bar_y1 = x0 + pad, y0 + int(46 * s), x1 - pad, y0 + int(56 * s)
    filled = bar_x0 + round((bar_x1 - bar_x0) * min(1.0, max(0.0, mood.confidence)))
    cv2.rectangle(out, (bar_x0, bar_y0), (filled, bar_y1), colour, -1)
    cv2.rectangle(out, (bar_x0, bar_y0), (bar_x1, bar_y1), (200, 200, 200), 1)
    return out


class MoodOverlay(Stage):
    accepts = (VideoFrame, Event)
    passthrough = True  # the call goes on without it (see Stage)

    def __init__(self, *, stale_s: float = STALE_S, name: str = "mood") -> None:
        super().__init__(name)
        self.stale_s = stale_s
        self._moods: deque[Mood] = deque(maxlen=64)  # in pts order, as the reader emits them

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if isinstance(frame, Event):
            if frame.kind == "emotion":
                self._moods.append(Mood.from_event(frame))
            return [frame]
        mood = self.mood_at(frame.pts)
        if mood is None or self.shed("overlay"):
            return [frame]
        image = await self.in_worker(draw_mood, frame.image, mood)
        return [VideoFrame(pts=frame.pts, image=image, index=frame.index)]

    def mood_at(self, t: float) -> Mood | None:
        """The newest reading shown at `t`, or None (none yet, or the readings stopped)."""
        while len(self._moods) > 1 and self._moods[1].pts <= t + SLACK_S:
            self._moods.popleft()  # frames come in pts order: an older reading is never shown again
        mood = self._moods[0] if self._moods and self._moods[0].pts <= t + SLACK_S else None
        return mood if mood is not None and t - mood.pts <= self.stale_s else None
