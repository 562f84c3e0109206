"""The talking face: a still photo animated as the call's outgoing video, by the voice or by the camera's face.

`voice` (`--avatar voice`): AudioFrame in (the enhanced voice), passed on; VideoFrames of the portrait out at
25 fps, each showing the lips the voice-to-lips net drew for its moment (the net hears 60 ms ahead, so a frame
leaves 60 ms plus its rendering after its time: the pts stay those of the moment shown, the lag is kept, not
hidden). Idle motion, blinks and the head come from the renderer; silence gives a closed, breathing mouth.

`reenact` (`--avatar reenact`): the tracked face of each camera frame goes through the landmark codec (a few
bytes a frame, `avcall.pipelines.face.codec`) and its decoded motion, eyes and roll drive the portrait,
a frame for each camera frame at its pts. Where no face was seen for over FACE_LOST_S the voice draws the
portrait until the face is back (both noted in the run's incidents). The voice net listens all along; each of
its frames waits until the camera has reached its moment and says whether a face drives it, or, live, until
FACE_LOST_S of audio has passed without camera frames (the camera is gone).

In both modes the camera's frames are dropped here (the avatar replaces them); lip features still flow on.
`off` (the served page's default) passes the camera's frames on and does nothing else; `mode` may change
while the call runs.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

import numpy as np

from ..frames import HOP_SAMPLES, SAMPLE_RATE, VIDEO_FPS as FPS, AudioFrame, FaceObservation, Frame, VideoFrame
from ..stage import Stage

HOPS_PER_FRAME = round(SAMPLE_RATE / HOP_SAMPLES / FPS)  # 4
MODES = ("off", "voice", "reenact")
FACE_LOST_S = 0.5


class TalkingFace(Stage):
    accepts = (AudioFrame, VideoFrame, FaceObservation)
    passthrough = True  # the call goes on without it (see Stage)

    def __init__(self, portrait: np.ndarray | None = None, *, mode: str = "voice", live: bool = True,
                 size: int = 256, net=None, name: str = "talking_face") -> None:
        super().__init__(name)
        self.portrait, self.live, self.size, self.net = portrait, live, size, net
        self.renderer = self.encoder = self.decoder = None
        self._index = 0
        self._last_pts = -np.inf  # frames leave in pts order, whichever mode drew them
        self._heard_until = -np.inf  # the end of the voice heard so far
        self._until = np.inf  # no frame for a moment at or past this (the end of the voice, once it is over)
        self.mode = mode

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"avatar mode {mode!r}: one of {', '.join(MODES)}")
        self._mode = mode
        self._by_voice = True  # until a face drives it (reenact)
        self._face_at = -np.inf  # pts of the latest camera frame with a face
        self._video_at = -np.inf  # pts of the latest camera frame
        self._held = None  # the latest decoded face
        self._pending: deque[tuple[float, np.ndarray]] = deque()  # voice frames waiting for the camera

    async def start(self) -> None:
        self.report(avatar=self.mode)
        if self.mode != "off":  # off (a served call's default): opened when first switched on
            await self.in_worker(self._open)

    def _open(self) -> None:
        from avcall.pipelines.face.render import PortraitRenderer
        from avcall.pipelines.face.codec import LandmarkDecoder, LandmarkEncoder
        from avcall.pipelines.nets.voice_to_lips import VoiceToLipsStream

        self.encoder, self.decoder = LandmarkEncoder(), LandmarkDecoder()
        self.renderer = PortraitRenderer(self.portrait, size=self.size)
        self.net = self.net or VoiceToLipsStream()

    def on_control(self, values: dict) -> None:
        if values.get("avatar") in ("off", "voice", "reenact"):
            self.mode = values["avatar"]
            self.report(avatar=self.mode)

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if self.mode == "off":
            return [frame]
        if self.renderer is None:
            await self.in_worker(self._open)
        if isinstance(frame, VideoFrame):
            return []  # the camera: replaced by the avatar
        if isinstance(frame, FaceObservation):
            return [frame, *(await self.in_worker(self._reenact, frame) if self.mode == "reenact" else [])]
        if frame.sample_rate != SAMPLE_RATE:
            return [frame]
        return [frame, *await self.in_worker(self._hear, frame)]

    async def flush(self) -> Sequence[Frame]:
        if self.mode == "voice" and self.net is not None:
            return await self.in_worker(self._finish_voice)
        if self.mode != "reenact" or not self._pending:
            return []
        return await self.in_worker(self._resolve, np.inf)

    def _finish_voice(self) -> list[VideoFrame]:
        """The voice's last frames: the net hears LOOKAHEAD hops ahead of the frame it draws, so at the end of
        the voice silence is fed past it until every moment before the end has its frame (a voice of d seconds
        gives ceil(25 d) frames, as many as a video of its length)."""
        from avcall.pipelines.nets.voice_to_lips import LOOKAHEAD

        if not np.isfinite(self._heard_until):
            return []
        end, self._until = self._heard_until, self._heard_until
        try:
            tail = np.zeros((LOOKAHEAD + HOPS_PER_FRAME) * HOP_SAMPLES, np.float32)
            return self._hear(AudioFrame(pts=end, samples=tail))
        finally:
            self._until = np.inf

    def _emit(self, image: np.ndarray, pts: float) -> list[VideoFrame]:
        if pts <= self._last_pts + 1e-6:
            return []  # the other mode has shown this moment already
        self._last_pts = pts
        self._index += 1
        return [VideoFrame(pts=pts, image=image, index=self._index - 1)]

    def _reenact(self, obs: FaceObservation) -> list[VideoFrame]:
        out = self._resolve(obs.pts - 1e-6)  # the voice's frames before this moment first: pts order
        self._video_at = obs.pts
        packet = self.encoder.encode_observation(obs)
        self.incidents.count("avatar_codec_bytes", len(packet))
        self.incidents.count("avatar_codec_frames")
        face = self.decoder.decode(packet)
        if face.present:
            self._face_at, self._held = obs.pts, face
            if self._by_voice:
                self._by_voice = False
                self.incidents.note("avatar_reenact", obs.pts)
        elif not self._by_voice and obs.pts - self._face_at > FACE_LOST_S:
            self._by_voice = True
            self.incidents.note("avatar_voice_fallback", obs.pts, why="no face")
        if self._by_voice:
            return out
        face = self._held  # held for a frame or two without a face
        # the speaker's motion on the portrait's own mouth
        image = self.renderer.render(self.renderer.neutral_shape + face.motion, obs.pts, face.eye_closure,
                                     face.roll)
        return out + self._emit(image, obs.pts)

    def _hear(self, audio: AudioFrame) -> list[VideoFrame]:
        from avcall.pipelines.nets.voice_to_lips import LOOKAHEAD

        out = []
        if not np.isfinite(self._until):
            self._heard_until = max(self._heard_until, audio.pts + len(audio.samples) / SAMPLE_RATE)
        for i in range(0, len(audio.samples) - 159, 160):
            row = self.net.step(audio.samples[i:i + 160])
            shown_at = audio.pts + (i + 160) / SAMPLE_RATE - LOOKAHEAD * 0.01  # the moment these lips belong to
            if shown_at < -1e-6 or round(shown_at * 100) % HOPS_PER_FRAME:  # frames on the 25 fps grid
                continue
            shown_at = round(shown_at * FPS) / FPS
            if shown_at >= self._until - 1e-6:
                continue
            lips = row[:80].reshape(40, 2) + self.net.mean
            if self.mode == "voice":
                out += self._draw_voice(shown_at, lips)
            else:
                self._pending.append((shown_at, lips))
        if self.mode == "reenact":
            heard_until = audio.pts + len(audio.samples) / SAMPLE_RATE
            out += self._resolve(max(self._video_at, heard_until - FACE_LOST_S) if self.live else self._video_at)
        return out

    def _resolve(self, until: float) -> list[VideoFrame]:
        """The waiting voice frames up to `until`: drawn where no face drives their moment."""
        out = []
        while self._pending and self._pending[0][0] <= until:
            shown_at, lips = self._pending.popleft()
            if shown_at - self._face_at <= FACE_LOST_S:
                continue  # the face drives this moment
            if not self._by_voice:  # no camera frame has come for a while: the camera is gone
                self._by_voice = True
                self.incidents.note("avatar_voice_fallback", shown_at, why="no camera frames")
            out += self._draw_voice(shown_at, lips)
        return out

    def _draw_voice(self, shown_at: float, lips: np.ndarray) -> list[VideoFrame]:
        if self.shed("avatar_frames"):  # under load: every other frame (the net still hears every hop)
            return []
        return self._emit(self.renderer.render(lips.astype(np.float64), shown_at), shown_at)
