"""WebRTC sinks: the pipeline's audio and video as aiortc tracks sent back to the peer, and its events on
the peer's data channel.

`TrackSink` hands 10 ms hops to `OutgoingAudioTrack`, which the RTP sender pulls 20 ms frames from
(16 kHz mono s16; aiortc's Opus encoder resamples). It measures the added delay of the audio path on the
server: from the moment a hop arrived from the peer (the source's `arrivals`, by pts) to the moment the
frame holding it leaves for the encoder. Video frames go to `OutgoingVideoTrack` the same way (latest wins:
the encoder never sees a backlog), and only those of the talking face: a call's overlay goes to the page as
landmarks on the data channel (pipelines/stages/landmarks.py), so without the talking face the track gets no
frame and aiortc's sender waits in `recv`, encoding nothing.
"""

from __future__ import annotations

import asyncio
import fractions
import json
from collections import deque
from typing import Callable, Sequence

import numpy as np

from ..clock import SessionClock
from ..frames import SAMPLE_RATE, AudioFrame, Event, Frame, VideoFrame
from ..stage import Stage

FRAME_SAMPLES = SAMPLE_RATE // 50  # 20 ms, Opus's usual frame
VIDEO_CLOCK = 90_000


def _track_base():
    from aiortc import MediaStreamTrack

    return MediaStreamTrack


class OutgoingAudioTrack(_track_base()):
    kind = "audio"

    def __init__(self, clock: SessionClock, arrivals: dict[int, float] | None = None,
                 content_lag: Callable[[], int] | None = None) -> None:
        """`content_lag`: how many samples the content of an outgoing hop lags its pts (the enhancer's delay, as
        the suppressor it runs now has it)."""
        super().__init__()
        self.clock, self.arrivals = clock, arrivals if arrivals is not None else {}
        self.content_lag = content_lag or (lambda: 0)
        self._hops: asyncio.Queue[AudioFrame] = asyncio.Queue()
        self._carry = np.zeros(0, np.float32)  # samples of a hop that did not fit the last frame
        self._sent = 0
        self.delays_ms: deque[float] = deque(maxlen=500)  # the recent added delays

    def put(self, hop: AudioFrame) -> None:
        self._hops.put_nowait(hop)

    async def recv(self):
        import av

        parts, last = [self._carry], None
        while sum(len(p) for p in parts) < FRAME_SAMPLES:
            last = await self._hops.get()
            parts.append(last.samples)
        samples = np.concatenate(parts)
        samples, self._carry = samples[:FRAME_SAMPLES], samples[FRAME_SAMPLES:]
        arrived = (self.arrivals.get(round(last.pts * SAMPLE_RATE) - self.content_lag())
                   if last is not None else None)
        if arrived is not None:
            self.delays_ms.append(1000 * (self.clock.now() - arrived))
        pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, self._sent, fractions.Fraction(1, SAMPLE_RATE)
        self._sent += FRAME_SAMPLES
        return frame


class OutgoingVideoTrack(_track_base()):
    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._latest: VideoFrame | None = None
        self._ready = asyncio.Event()
        self.sent = 0  # frames handed to the encoder

    def put(self, frame: VideoFrame) -> None:
        self._latest = frame
        self._ready.set()

    async def recv(self):
        import av

        await self._ready.wait()
        self._ready.clear()
        frame = self._latest
        out = av.VideoFrame.from_ndarray(frame.image, format="bgr24")
        out.pts, out.time_base = round(frame.pts * VIDEO_CLOCK), fractions.Fraction(1, VIDEO_CLOCK)
        self.sent += 1
        return out


class TrackSink(Stage):
    """Hands the frames of its track's kind (audio hops or video frames) to an outgoing track."""

    def __init__(self, track: OutgoingAudioTrack | OutgoingVideoTrack, when: Callable[[], bool] | None = None) -> None:
        """`when`: whether the frames go to the track now (a call's video goes out only while the talking face
        draws it: otherwise the track gets nothing and its sender encodes nothing)."""
        super().__init__(f"webrtc_{track.kind}_out")
        self.accepts = (AudioFrame,) if track.kind == "audio" else (VideoFrame,)
        self.track, self.when = track, when or (lambda: True)

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if self.when():
            self.track.put(frame)
        return [frame]


class EventChannelSink(Stage):
    """Events as JSON messages ({"type": kind, ...data}) on the data channel `send` gives, when it is open;
    the stages' state events (`Stage.report`) to `on_state` instead, which folds them into the telemetry."""

    accepts = (Event,)

    def __init__(self, send: Callable[[str], None], on_state: Callable[[dict], None] | None = None, *,
                 name: str = "data_channel_out") -> None:
        super().__init__(name)
        self.send, self.on_state = send, on_state

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if frame.kind == "state":
            if self.on_state is not None:
                self.on_state(frame.data)
        else:
            self.send(json.dumps({"type": frame.kind, **frame.data}))
        return [frame]
