"""WebRTC sources: an aiortc remote track as AudioFrames (16 kHz mono, 10 ms hops) or VideoFrames (BGR).

Frames are stamped on the session clock when they arrive from the jitter buffer (audio: the first sample
of the block, so hops keep counting samples; see HopChunker). A track that ends (the peer left) ends the
source.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..audio import HopChunker, frames_to_mono, mono_16k_resampler
from ..clock import SessionClock
from ..frames import SAMPLE_RATE, AudioFrame, VideoFrame
from .base import Source, SourceEnded


def arrival_key(pts: float) -> int:
    return round(pts * SAMPLE_RATE)


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
        # pts follow the arrivals within a frame or two either way (the jitter buffer releases bursts)
        self._chunker = HopChunker(resync_s=0.02, rewind_s=0.06)
        self._pending: list[AudioFrame] = []
        self.arrivals: OrderedDict[int, float] = OrderedDict()  # hop pts (in samples) -> when it arrived

    async def recv(self) -> AudioFrame:
        while not self._pending:
            frame = await _next(self.track)
            now = self.clock.now()
            self._pending = self._chunker.push(frames_to_mono(self._resampler.resample(frame)),
                                               now - frame.samples / frame.sample_rate)  # the block's first sample
            for hop in self._pending:
                self.arrivals[arrival_key(hop.pts)] = now
            while len(self.arrivals) > 1000:
                self.arrivals.popitem(last=False)
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
