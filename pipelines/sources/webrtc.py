"""WebRTC sources: an aiortc remote track as AudioFrames (16 kHz mono, 10 ms hops) or VideoFrames (BGR).

Frames are stamped on the session clock when they arrive from the jitter buffer (audio: the first sample
of the block, so hops keep counting samples; see HopChunker). A track that ends (the peer left) ends the
source.

`tolerate_audio_loss(receiver)` gives an audio receiver a jitter buffer that skips a lost packet once a later
one waits behind it and holds one packet (20 ms), not four: aiortc's own waits for the lost packet until its
buffer overflows and then drops received ones, so 7% of the packets lost on the network lose a third of the
voice, and it holds 80 ms of every call's voice.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

import numpy as np

from ..audio import HopChunker, frames_to_mono, mono_16k_resampler
from ..clock import SessionClock
from ..frames import SAMPLE_RATE, AudioFrame, VideoFrame
from .base import Source, SourceEnded


# packets an audio receiver holds before the oldest leaves (aiortc's own: 4, 80 ms): 1 keeps 99.9% of the packets
# that came with 40 ms of jitter and 7% loss (the lossy-network test's), waiting 20 ms, not 80 (docs/performance.md)
RECEIVE_PREFETCH = 1


def _loss_tolerant_buffer():
    from aiortc.jitterbuffer import JitterBuffer, JitterFrame

    class LossTolerantAudioBuffer(JitterBuffer):
        """One packet is one audio frame: once more than `prefetch` packets wait, the oldest leaves, and the
        holes before it (packets lost, or later than the others by more than the prefetch) are given up.
        `waits_ms`: how long the recent packets waited in it (the receive leg of the voice's delay)."""

        def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
            super().__init__(capacity, prefetch=prefetch, is_video=is_video)
            self._arrived: dict[int, float] = {}
            self.waits_ms: deque[float] = deque(maxlen=500)

        def add(self, packet):
            self._arrived[packet.sequence_number] = time.monotonic()
            return super().add(packet)

        def _remove_frame(self, sequence_number: int):
            waiting = [(i, p) for i in range(self._capacity)
                       if (p := self._packets[(self._origin + i) % self._capacity]) is not None]
            if len(waiting) <= self._prefetch:
                return None
            offset, packet = waiting[0]
            self.remove(offset + 1)
            now = time.monotonic()
            arrived = self._arrived.pop(packet.sequence_number, now)
            self.waits_ms.append(1000 * (now - arrived))
            if len(self._arrived) > 4 * self._capacity:  # the given-up holes' entries
                self._arrived = {k: v for k, v in self._arrived.items() if now - v < 5.0}
            return JitterFrame(data=packet._data, timestamp=packet.timestamp)

    return LossTolerantAudioBuffer


def tolerate_audio_loss(receiver, prefetch: int = RECEIVE_PREFETCH):
    """Swap the audio receiver's jitter buffer for the loss-tolerant one (same size, `prefetch` packets held)
    and return it (its `waits_ms`); None where this aiortc keeps its buffer elsewhere (then it is left as it
    is)."""
    from aiortc.jitterbuffer import JitterBuffer

    name = "_RTCRtpReceiver__jitter_buffer"  # aiortc's private attribute: checked, never assumed
    buffer = getattr(receiver, name, None)
    if type(buffer) is not JitterBuffer or buffer._is_video:
        return None
    ours = _loss_tolerant_buffer()(buffer.capacity, prefetch=prefetch)
    setattr(receiver, name, ours)
    return ours


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
        self.rtp: OrderedDict[float, int] = OrderedDict()  # frame pts -> its RTP timestamp (the sender's 90 kHz)
        self._unwrap = None

    async def recv(self) -> VideoFrame:
        frame = await _next(self.track)
        image = np.ascontiguousarray(frame.to_ndarray(format="bgr24"))
        self._index += 1
        pts = self.clock.now()
        if frame.pts is not None:  # aiortc's decoded frame keeps its RTP timestamp as its pts
            if self._unwrap is None:
                from ..stages.landmarks import RtpUnwrap

                self._unwrap = RtpUnwrap()
            self.rtp[pts] = self._unwrap(int(frame.pts))
            while len(self.rtp) > 300:
                self.rtp.popitem(last=False)
        return VideoFrame(pts=pts, image=image, index=self._index)

    async def stop(self) -> None:
        self.track.stop()
