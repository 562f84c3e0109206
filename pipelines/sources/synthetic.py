"""Synthetic source for tests and benchmarks: video that flashes and audio that clicks at set instants.

Frames come out in pts order (audio and video interleaved), on the session clock; `realtime=True` paces
them like a live device.
"""

from __future__ import annotations

import asyncio
from typing import Iterator, Sequence

import numpy as np

from ..clock import SessionClock
from ..frames import HOP_SAMPLES, SAMPLE_RATE, AudioFrame, Frame, VideoFrame
from .base import Source, SourceEnded

CLICK_S = 0.005


def synthetic_frames(duration: float, *, fps: float = 25.0, size: tuple[int, int] = (320, 240),
                     events: Sequence[float] = (), seed: int = 0) -> Iterator[Frame]:
    """Grey video with a white frame at each event, low noise with a 5 ms click at each event."""
    rng = np.random.default_rng(seed)
    width, height = size
    dark = np.full((height, width, 3), 40, np.uint8)
    bright = np.full((height, width, 3), 255, np.uint8)
    flash_frames = {int(round(t * fps)) for t in events}
    total = int(round(duration * SAMPLE_RATE))
    audio = (0.001 * rng.standard_normal(total)).astype(np.float32)
    click = int(CLICK_S * SAMPLE_RATE)
    for t in events:
        start = int(round(t * SAMPLE_RATE))
        audio[start:start + click] = 0.8
    n_video = int(round(duration * fps))
    v = a = 0
    while v < n_video or a < total:
        video_pts, audio_pts = v / fps, a / SAMPLE_RATE
        if v < n_video and (a >= total or video_pts <= audio_pts):
            yield VideoFrame(pts=video_pts, index=v, image=bright if v in flash_frames else dark)
            v += 1
        else:
            yield AudioFrame(pts=audio_pts, samples=audio[a:a + HOP_SAMPLES].copy())
            a += HOP_SAMPLES


class SyntheticSource(Source):
    def __init__(self, duration: float, *, clock: SessionClock | None = None, realtime: bool = False,
                 **kwargs) -> None:
        self.clock = clock or SessionClock()
        self.realtime = realtime
        self._frames = synthetic_frames(duration, **kwargs)

    async def recv(self) -> Frame:
        frame = next(self._frames, None)
        if frame is None:
            raise SourceEnded
        if self.realtime:
            delay = self.clock.monotonic_at(frame.pts) - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
        return frame
