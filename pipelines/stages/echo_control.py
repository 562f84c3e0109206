"""Echo control: the far end's voice, played on the loudspeaker and picked up again by the microphone, taken
out of the microphone's hops before anything else hears them (the noise suppressor changes a voice
non-linearly and delays it: an echo canceller after it, the call app's own, no longer finds the far end in it).

The reference is what the call app plays: the monitor of its output device (the sink's own mix, taken before
the loudspeaker's buffer and the room, so it leads the echo). Each hop of it is stamped on the session clock
as it comes; before a microphone hop of time t is cancelled, every far-end hop up to t is handed to the
canceller (pipelines/echo.py: WebRTC's AEC3 by default), which finds the remaining delay itself.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

import numpy as np

from ..audio import HopChunker
from ..clock import SessionClock
from ..echo import Canceller, open_canceller
from ..frames import HOP_SAMPLES, SAMPLE_RATE, AudioFrame, Frame
from ..sources.pulse import PulseRecorder
from ..stage import Stage

HOP_S = HOP_SAMPLES / SAMPLE_RATE
BACKLOG_S = 1.0  # far-end audio kept waiting at most: older hops are of no use to a canceller


class EchoControl(Stage):
    accepts = (AudioFrame,)
    passthrough = True  # a hop it fails on goes on as recorded: the call keeps its voice

    def __init__(self, reference: str, *, clock: SessionClock, canceller: str = "aec3",
                 recorder: Callable[..., PulseRecorder] = PulseRecorder) -> None:
        """`reference`: the sound-server source of what the loudspeaker plays (a sink's monitor)."""
        super().__init__("echo_control")
        self.reference = reference
        self.clock = clock
        self.canceller_name = canceller
        self._make_recorder = recorder
        self._recorder: PulseRecorder | None = None
        self._canceller: Canceller | None = None
        self._far: deque[AudioFrame] = deque(maxlen=int(BACKLOG_S / HOP_S))
        self._chunker = HopChunker()
        self.far_hops = 0  # far-end hops handed to the canceller

    async def start(self) -> None:
        self._canceller = await self.in_worker(open_canceller, self.canceller_name)
        self._recorder = self._make_recorder(self.reference, self._on_far_hop, name="far end")
        await self.in_worker(self._recorder.open)
        self.report(echo=self.canceller_name, far_end=self.reference)

    def _on_far_hop(self, samples: np.ndarray) -> None:
        """The recorder's thread: stamp the hop (its first sample's time) and queue it."""
        for frame in self._chunker.push(samples, self.clock.now() - len(samples) / SAMPLE_RATE):
            self._far.append(frame)  # deque.append is atomic: the event loop takes from the other end

    def take_far(self, until: float) -> list[np.ndarray]:
        """The queued far-end hops that began before `until`, oldest first."""
        taken = []
        while self._far and self._far[0].pts < until:
            taken.append(self._far.popleft().samples)
        return taken

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if len(frame.samples) != HOP_SAMPLES:  # not a microphone's hop: nothing to pair it with
            return [frame]
        far = self.take_far(frame.pts + HOP_S)
        self.far_hops += len(far)
        clean = await self.in_worker(self._cancel, far, frame.samples)
        return [AudioFrame(pts=frame.pts, samples=clean, sample_rate=frame.sample_rate)]

    def _cancel(self, far: list[np.ndarray], mic: np.ndarray) -> np.ndarray:
        for hop in far:
            self._canceller.render(hop)
        return self._canceller.capture(mic)

    async def stop(self) -> None:
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            await self.in_worker(recorder.close)
        if self._canceller is not None:
            self._canceller.close()
            self._canceller = None
