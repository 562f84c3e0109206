"""The talking face: a still photo animated by the voice, as the call's outgoing video.

AudioFrame in (the enhanced voice), passed on; VideoFrames of the portrait out at 25 fps, each showing the
lips the voice-to-lips net drew for its moment (the net hears 60 ms ahead, so a frame leaves 60 ms plus its
rendering after its time: the pts stay those of the moment shown, the lag is kept, not hidden). Idle
motion, blinks and the head come from the renderer; silence gives a closed, breathing mouth. The camera's
frames are dropped here (the avatar replaces them); lip features still flow to the enhancer.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..frames import SAMPLE_RATE, AudioFrame, Frame, VideoFrame
from ..stage import Stage

FPS = 25
HOPS_PER_FRAME = SAMPLE_RATE // 160 // FPS  # 4


class TalkingFace(Stage):
    accepts = (AudioFrame, VideoFrame)
    passthrough = True  # the call goes on without it (see Stage)

    def __init__(self, portrait: np.ndarray | None = None, *, size: int = 256, net=None,
                 name: str = "talking_face") -> None:
        super().__init__(name)
        self.portrait, self.size, self.net = portrait, size, net
        self.renderer = None
        self._index = 0

    async def start(self) -> None:
        self.renderer, self.net = await self.in_worker(self._open)

    def _open(self):
        from avcall.models.data.render import PortraitRenderer
        from avcall.models.talking_face.runtime import VoiceToLipsStream

        return PortraitRenderer(self.portrait, size=self.size), self.net or VoiceToLipsStream()

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if isinstance(frame, VideoFrame):
            return []  # the camera: replaced by the avatar
        if frame.sample_rate != SAMPLE_RATE:
            return [frame]
        return [frame, *await self.in_worker(self._hear, frame)]

    def _hear(self, audio: AudioFrame) -> list[VideoFrame]:
        from avcall.models.talking_face.features import LOOKAHEAD

        out = []
        for i in range(0, len(audio.samples) - 159, 160):
            row = self.net.step(audio.samples[i:i + 160])
            shown_at = audio.pts + (i + 160) / SAMPLE_RATE - LOOKAHEAD * 0.01  # the moment these lips belong to
            if shown_at < -1e-6 or round(shown_at * 100) % HOPS_PER_FRAME:  # frames on the 25 fps grid
                continue
            shown_at = round(shown_at * FPS) / FPS
            lips = row[:80].reshape(40, 2) + self.net.mean
            image = self.renderer.render(lips.astype(np.float64), shown_at)
            out.append(VideoFrame(pts=shown_at, image=image, index=self._index))
            self._index += 1
        return out
