"""How the speaker feels, from the face and the voice, about 4 times a second.

VideoFrame, FaceObservation and AudioFrame in, passed on untouched. Every `hop_s` of the session clock, on
the stage's worker thread and behind the frames (they never hold them up): the latest tracked face, when one
was seen in the last `hold_s`, is cut out (an affine warp to 64x64 grey) and read by the face net; the last
2 s of audio, when speech was heard in the last `hold_s` (level over the running noise floor, as the
captioner decides), are read by the voice net after normalising by the speaker's usual voiced spectrum as
learnt over the call so far. The last `segments` hops are fused (the shipped method, see README "Emotion");
an Event `kind="emotion"` goes out with the 7 probabilities smoothed over `smoothing_s`, valence and
arousal, the leading emotion and a confidence.

`enabled` switches it at run time (off: frames pass untouched, nothing is read). No face: the voice alone.
Silence: the face alone. Neither: the last reading is held and its confidence decays by `decay` per hop.
Readings stay in the pipeline: nothing is written unless a sink records them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..frames import AudioFrame, Event, FaceObservation, Frame, VideoFrame
from ..stage import Stage
from ..telemetry import StageTelemetry, _percentiles
from .captioner import VoiceActivity


@dataclass(frozen=True)
class EmotionReading:
    pts: float
    probs: dict[str, float]
    valence: float
    arousal: float
    leading: str
    confidence: float
    sources: tuple[str, ...]  # "face", "voice": what this hop saw; () when held

    def to_event(self) -> Event:
        return Event(pts=self.pts, kind="emotion", data={
            "probs": self.probs, "valence": self.valence, "arousal": self.arousal, "leading": self.leading,
            "confidence": self.confidence, "sources": list(self.sources)})


@dataclass
class EmotionTelemetry(StageTelemetry):
    readings: int = 0
    face_only: int = 0
    voice_only: int = 0
    held: int = 0
    infer_ms: deque = field(default_factory=lambda: deque(maxlen=1000), repr=False)  # bounded: calls last hours

    def summary(self) -> dict:
        return super().summary() | {"readings": self.readings, "face_only": self.face_only,
                                    "voice_only": self.voice_only, "held": self.held,
                                    "infer_ms": _percentiles(self.infer_ms)}


class EmotionReader(Stage):
    accepts = (VideoFrame, FaceObservation, AudioFrame)
    passthrough = True  # the call goes on without it (see Stage): a failed read must not end a served call

    def __init__(self, models=None, *, method: str | None = None, hop_s: float = 0.25, hold_s: float = 0.5,
                 segments: int = 4, smoothing_s: float = 1.0, decay: float = 0.85, enabled: bool = True,
                 live: bool = True, name: str = "emotion") -> None:
        super().__init__(name)
        self.enabled = enabled  # off: frames pass untouched, nothing is read (the served page's opt-in)
        # live: a hop due while the last is still being read is skipped (frames never wait); from a file,
        # the stage waits for it, so that every hop is read
        self.telemetry = EmotionTelemetry(self.name)
        self.models, self.method = models, method
        self.hop_s, self.hold_s, self.segments = hop_s, hold_s, segments
        self.smoothing_s, self.decay = smoothing_s, decay
        self.live = live
        self.vad = VoiceActivity()
        self._image: VideoFrame | None = None
        self._face: tuple[float, np.ndarray, np.ndarray] | None = None  # (pts, image, landmarks) of the last face
        self._audio: deque[AudioFrame] = deque()
        self._voice_at = -1e9
        self._next_at: float | None = None
        self._pending: asyncio.Future | None = None
        self._reset: asyncio.Future | None = None  # the worker's state reset after a switch off
        # worker thread only: the last hops' unimodal outputs and the smoothed reading
        self._voice_hops: deque = deque(maxlen=segments)
        self._face_hops: deque = deque(maxlen=segments)
        self._smoothed: np.ndarray | None = None
        self._confidence = 0.0
        self._speaker = None  # SpeakerNorm: the speaker's usual voiced spectrum, learnt over the call

    async def start(self) -> None:
        if self.models is None:
            from avcall.models.emotion.runtime import EmotionModels

            self.models = await self.in_worker(EmotionModels)
        if self.method is None:
            self.method = self.models.shipped_fusion

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if not self.enabled:
            if self._next_at is not None:  # just switched off: forget the call's reading, drop one under way
                self._forget()
            return [frame]
        out: list[Frame] = [frame]
        if isinstance(frame, VideoFrame):
            self._image = frame
        elif isinstance(frame, FaceObservation):
            if frame.present and frame.landmarks is not None and self._image is not None \
                    and abs(self._image.pts - frame.pts) < 1e-6:
                self._face = (frame.pts, self._image.image, frame.landmarks)  # cut out at the next hop only
        else:
            self._audio.append(frame)
            while self._audio and frame.pts - self._audio[0].pts > 2.5:
                self._audio.popleft()
            if len(frame.samples) and self.vad.audio(frame.samples, frame.pts):
                self._voice_at = frame.pts + frame.duration
        if self._pending is not None and self._pending.done():
            reading, self._pending = self._pending.result(), None
            out.append(reading.to_event())
        now = frame.pts + (frame.duration if isinstance(frame, AudioFrame) else 0.0)
        if self._next_at is None:
            self._next_at = now + self.hop_s
        if now >= self._next_at and self._pending is not None and not self.live:
            out.append((await self._pending).to_event())
            self._pending = None
        if now >= self._next_at and self._pending is None:
            self._next_at = max(self._next_at + self.hop_s, now)
            face = self._face[1:] if self._face is not None and now - self._face[0] <= self.hold_s else None
            voice = self._window() if now - self._voice_at <= self.hold_s else None
            self._pending = asyncio.ensure_future(self.in_worker(self.read, now, face, voice))
        return out

    def _forget(self) -> None:
        """Off: the reading under way is dropped and the worker state reset after it (on the worker's one
        thread, so the two never overlap)."""
        self._pending, self._face, self._next_at = None, None, None
        self._reset = asyncio.ensure_future(self.in_worker(self._reset_state))

    def _reset_state(self) -> None:
        self._voice_hops.clear(), self._face_hops.clear()
        self._smoothed, self._confidence = None, 0.0

    async def flush(self) -> Sequence[Frame]:
        if self._pending is None:
            return ()
        reading, self._pending = await self._pending, None
        return [reading.to_event()]

    async def stop(self) -> None:
        held = [t for t in (self._pending, self._reset) if t is not None]
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)

    def _window(self) -> np.ndarray:
        """The last 2 s of audio (shorter at the start of a call)."""
        from avcall.models.emotion.features import WINDOW_SAMPLES

        samples = np.concatenate([a.samples for a in self._audio]) if self._audio else np.zeros(0, np.float32)
        return samples[-WINDOW_SAMPLES:]

    def read(self, pts: float, face: tuple[np.ndarray, np.ndarray] | None, voice: np.ndarray | None) -> EmotionReading:
        """One hop on the worker thread: the face (image, landmarks) cut out, the nets on what was seen and
        heard, fused over the last segments, smoothed."""
        from avcall.models.emotion.features import SpeakerNorm, align_face, face_input, voice_window
        from avcall.models.emotion.labels import CLASSES, valence_arousal

        t0 = time.perf_counter()
        face = face_input(align_face(*face)) if face is not None else None
        if voice is not None:
            window = voice_window(voice)
            self._speaker = self._speaker or SpeakerNorm()
            self._speaker.update(window, self.hop_s)
            self._voice_hops.append(self.models.voice(self._speaker.apply(window)[None]))
        else:
            self._voice_hops.append(None)
        self._face_hops.append(self.models.face(face[None]) if face is not None else None)
        sources = tuple(s for s, x in (("face", face), ("voice", voice)) if x is not None)
        t = self.telemetry
        if sources:
            # the recent segments of each modality still present; a modality absent this hop counts as missing
            v = [h for h in self._voice_hops if h is not None] if voice is not None else []
            f = [h for h in self._face_hops if h is not None] if face is not None else []
            stack = (lambda hops: (np.concatenate([h[0] for h in hops]), np.concatenate([h[1] for h in hops]))
                     if hops else None)
            probs = self.models.fuse(self.method, stack(v), stack(f))
            a = min(1.0, self.hop_s / self.smoothing_s) if self._smoothed is not None else 1.0
            self._smoothed = probs if self._smoothed is None else (1 - a) * self._smoothed + a * probs
            self._confidence = float(self._smoothed.max())
            t.face_only += sources == ("face",)
            t.voice_only += sources == ("voice",)
        else:
            t.held += 1
            self._confidence *= self.decay
        p = self._smoothed if self._smoothed is not None else np.full(len(CLASSES), 1.0 / len(CLASSES))
        valence, arousal = valence_arousal(p)
        t.readings += 1
        t.infer_ms.append((time.perf_counter() - t0) * 1000)
        return EmotionReading(pts=round(pts, 3), probs={c: round(float(x), 4) for c, x in zip(CLASSES, p)},
                              valence=round(valence, 3), arousal=round(arousal, 3),
                              leading=CLASSES[int(np.argmax(p))], confidence=round(self._confidence, 3),
                              sources=sources)

