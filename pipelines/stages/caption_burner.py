"""Burned-in captions: the caption line of the moment drawn at the bottom of each video frame.

Caption events and video frames reach this stage separately. A frame shows the newest caption emitted at or
before its pts (a partial while the line is spoken, then the final), for `hold_s` after the line ended.
Offline, frames are held until the audio has been heard up to their time, so the picture waits for its words;
live (`live=True`) a frame never waits.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

import cv2
import numpy as np

from ..frames import AudioFrame, Event, Frame, VideoFrame
from ..stage import Stage


def draw_caption(image: np.ndarray, text: str) -> np.ndarray:
    """`text` in white on a dark band at the bottom, wrapped to the frame's width."""
    out = image.copy()
    h, w = out.shape[:2]
    scale = max(0.4, w / 900)
    thickness = max(1, round(scale * 2))
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and cv2.getTextSize(trial, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] > w - 20:
            lines.append(line)
            line = word
        else:
            line = trial
    lines = (lines + [line])[-2:]  # the last two lines: the newest words
    step = int(30 * scale) + 6
    top = h - step * len(lines) - 8
    band = out[max(top, 0):, :]
    band[:] = (band * 0.4).astype(out.dtype)
    for i, text_line in enumerate(lines):
        cv2.putText(out, text_line, (10, top + step * (i + 1) - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)
    return out


class CaptionBurner(Stage):
    accepts = (VideoFrame, Event, AudioFrame)
    passthrough = True  # the call goes on without it (see Stage)

    def __init__(self, *, live: bool = False, hold_s: float = 2.0, name: str = "burn_captions") -> None:
        super().__init__(name)
        self.live, self.hold_s = live, hold_s
        self._captions: list[tuple[float, float, str]] = []  # (emitted, shown until, text)
        self._frames: deque[VideoFrame] = deque()
        self._heard = float("-inf")

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if isinstance(frame, Event):
            if frame.kind == "caption":
                d = frame.data
                until = d["end"] + self.hold_s if d["kind"] == "final" else float("inf")
                self._captions.append((d["emitted"], until, d["text"]))
            return [frame]
        if isinstance(frame, AudioFrame):
            self._heard = max(self._heard, frame.pts + frame.duration)
            return [frame, *self._release(final=False)]
        self._frames.append(frame)
        return self._release(final=False)

    async def flush(self) -> Sequence[Frame]:
        return self._release(final=True)

    def _release(self, final: bool) -> list[Frame]:
        out = []
        while self._frames and (final or self.live or self._frames[0].pts <= self._heard):
            video = self._frames.popleft()
            text = self._text_at(video.pts)
            out.append(VideoFrame(pts=video.pts, image=draw_caption(video.image, text), index=video.index)
                       if text else video)
        return out

    def _text_at(self, t: float) -> str:
        shown = [c for c in self._captions if c[0] <= t]
        if not shown or t > shown[-1][1]:
            return ""
        return shown[-1][2]
