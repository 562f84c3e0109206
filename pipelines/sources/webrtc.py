"""WebRTC sources: an aiortc remote track as AudioFrames (16 kHz mono, 10 ms hops) or VideoFrames (BGR).

Frames are stamped on the session clock when they arrive from the jitter buffer (audio: the first sample
of the block, so hops keep counting samples; see HopChunker). A track that ends (the peer left) ends the
source.
"""

from __future__ import annotations

import numpy as np

from ..audio import HopChunker, frames_to_mono, mono_16k_resampler
from ..clock import SessionClock
from ..frames import AudioFrame, VideoFrame
from .base import Source, SourceEnded


async def _next(track):
    from aiortc.mediastreams import MediaStreamError

    try:
        return await track.recv()
    except MediaStreamError:
        raise SourceEnded from None


class WebRTCAudioSource(Source):
    def __init__(self, track, clock: SessionClock) -> None:
        self.track, self.clock = track, clock
        self._resampler = mono_16k_resampler()
        self._chunker = HopChunker(resync_s=0.02)  # pts stay within a frame of the arrival times
        self._pending: list[AudioFrame] = []

    async def recv(self) -> AudioFrame:
        while not self._pending:
            frame = await _next(self.track)
            pts = self.clock.now() - frame.samples / frame.sample_rate  # the block's first sample
            self._pending = self._chunker.push(frames_to_mono(self._resampler.resample(frame)), pts)
        return self._pending.pop(0)

    async def stop(self) -> None:
        self.track.stop()


class WebRTCVideoSource(Source):
    def __init__(self, track, clock: SessionClock) -> None:
        self.track, self.clock = track, clock
        self._index = 0

    async def recv(self) -> VideoFrame:
        frame = await _next(self.track)
        image = np.ascontiguousarray(frame.to_ndarray(format="bgr24"))
        self._index += 1
        return VideoFrame(pts=self.clock.now(), image=image, index=self._index)

    async def stop(self) -> None:
        self.track.stop()
