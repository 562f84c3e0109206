"""How the speaker feels, from the face and the voice, about 4 times a second.

VideoFrame, FaceObservation and AudioFrame in, passed on untouched. Every `hop_s` of the session clock, on
the stage's worker thread and behind the frames (they never hold them up): the latest tracked face, when one
was seen in the last `hold_s`, is cut out (an affine warp to 64x64 grey) and read by the face net; the last
2 s of audio, when speech was heard in the last `hold_s` (level over the running noise floor, as the
captioner decides), are read by the voice net after normalising by the speaker's usual voiced spectrum as
learnt over the call so far. The last `segments` hops are fused (the shipped method, see README "Emotion");
an Event `kind="emotion"` goes out with the 7 probabilities smoothed over `smoothing_s`, valence and
arousal, the leading emotion and a confidence.

Face and voice are paired by pts, never by arrival: each hop at time t reads the latest face shown at or
before t (its image and observation matched by pts, in whichever order they come) and the audio up to t.
From a file the audio runs seconds ahead of the tracked faces (it skips the tracker), so with
`wait_for_face` a due hop waits until the face of its time is in (an observation at or after t), for at
most `max_wait_s` of media (the video ended or stalled: what arrived is read), as the enhancer waits for
its lips; live, a hop reads what has arrived (the face a tracker's latency old).

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
from ..telemetry import StageTelemetry, percentiles
from .captioner import VoiceActivity

EPS = 1e-6  # seconds: pts that differ by less are the same instant
RECENT_FRAMES = 8  # images and faces kept for pairing by pts (a hop's worth at 30 fps): whole frames, so few


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
                                    "infer_ms": percentiles(self.infer_ms)}


class EmotionReader(Stage):
    accepts = (VideoFrame, FaceObservation, AudioFrame)
    passthrough = True  # the call goes on without it (see Stage): a failed read must not end a served call

    def __init__(self, models=None, *, method: str | None = None, hop_s: float = 0.25, hold_s: float = 0.5,
                 segments: int = 4, smoothing_s: float = 1.0, decay: float = 0.85, enabled: bool = True,
                 live: bool = True, wait_for_face: bool = False, max_wait_s: float = 10.0,
                 name: str = "emotion") -> None:
        super().__init__(name)
        self.enabled = enabled  # off: frames pass untouched, nothing is read (the served page's opt-in)
        # live: a hop due while the last is still being read is skipped (frames never wait); from a file,
        # the stage waits for it, so that every hop is read
        self.telemetry = EmotionTelemetry(self.name)
        self.models, self.method = models, method
        self.hop_s, self.hold_s, self.segments = hop_s, hold_s, segments
        self.smoothing_s, self.decay = smoothing_s, decay
        self.live = live
        self.wait_for_face, self.max_wait_s = wait_for_face, max_wait_s
        self.vad = VoiceActivity()
        self._images: deque[VideoFrame] = deque(maxlen=RECENT_FRAMES)  # waiting for their observation
        self._unpaired: deque[FaceObservation] = deque(maxlen=RECENT_FRAMES)  # faces waiting for their image
        self._faces: deque[tuple[float, np.ndarray, np.ndarray]] = deque(maxlen=RECENT_FRAMES)  # (pts, image, landmarks)
        self._seen_until = -1e9  # the pts of the latest face observation, present or not
        self._due: deque[tuple[float, np.ndarray | None]] = deque()  # hops waiting for their face: (t, voice)
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
            from avcall.pipelines.nets.emotion import EmotionModels

            self.models = await self.in_worker(EmotionModels)
        if self.method is None:
            self.method = self.models.shipped_fusion
        self.report(emotion="on" if self.enabled else "off")

    def on_control(self, values: dict) -> None:
        if isinstance(values.get("emotion"), bool):
            self.enabled = values["emotion"]
            self.report(emotion="on" if self.enabled else "off")

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if not self.enabled:
            if self._next_at is not None:  # just switched off: forget the call's reading, drop one under way
                self._forget()
            return [frame]
        out: list[Frame] = [frame]
        if isinstance(frame, VideoFrame):
            self._images.append(frame)
            self._pair()
        elif isinstance(frame, FaceObservation):
            self._seen_until = max(self._seen_until, frame.pts)
            if frame.present and frame.landmarks is not None:
                self._unpaired.append(frame)
                self._pair()
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
        if now >= self._next_at and (not self.live or self._pending is None):
            self._next_at = max(self._next_at + self.hop_s, now)
            if not self.shed("emotion"):  # under load every other hop is skipped (the reading stays on screen)
                self._due.append((now, self._window() if now - self._voice_at <= self.hold_s else None))
        # a due hop is read once the face of its time is in (or need not be waited for)
        while self._due and (not self.wait_for_face or self._seen_until >= self._due[0][0] - EPS
                             or now - self._due[0][0] > self.max_wait_s):
            out.extend(await self._read_next())
        return out

    async def _read_next(self) -> list[Frame]:
        """The oldest due hop to the worker, once the reading before it is out (every due hop is read, in
        order; live, a hop only falls due when no reading is under way)."""
        out: list[Frame] = []
        if self._pending is not None:
            out.append((await self._pending).to_event())
            self._pending = None
        t, voice = self._due.popleft()
        self._pending = asyncio.ensure_future(self.in_worker(self.read, t, self._face_at(t), voice))
        return out

    def _pair(self) -> None:
        """Each face observation with the image of the same pts, whichever came first (a live queue that
        drops video may deliver them apart)."""
        for obs in list(self._unpaired):
            image = next((v for v in self._images if abs(v.pts - obs.pts) < EPS), None)
            if image is not None:
                self._unpaired.remove(obs)
                self._images.remove(image)
                self._faces.append((obs.pts, image.image, obs.landmarks))  # cut out when a hop reads it
        if len(self._faces) > 1 and self._faces[-1][0] < self._faces[-2][0]:
            self._faces = deque(sorted(self._faces, key=lambda f: f[0]), maxlen=RECENT_FRAMES)

    def _face_at(self, t: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(image, landmarks) of the latest face shown at or before t, if seen within `hold_s`. Hops come in
        time order: the faces before that one are no longer needed."""
        while len(self._faces) > 1 and self._faces[1][0] <= t + EPS:
            self._faces.popleft()
        if not self._faces or self._faces[0][0] > t + EPS or t - self._faces[0][0] > self.hold_s:
            return None
        return self._faces[0][1:]

    def _forget(self) -> None:
        """Off: the reading under way is dropped and the worker state reset after it (on the worker's one
        thread, so the two never overlap)."""
        self._pending, self._next_at = None, None
        self._faces.clear(), self._unpaired.clear(), self._images.clear(), self._due.clear()
        self._reset = asyncio.ensure_future(self.in_worker(self._reset_state))

    def _reset_state(self) -> None:
        self._voice_hops.clear(), self._face_hops.clear()
        self._smoothed, self._confidence = None, 0.0

    async def flush(self) -> Sequence[Frame]:
        out: list[Frame] = []
        if not self.enabled:
            return out
        while self._due:  # the end: the hops still waiting read what arrived
            out.extend(await self._read_next())
        if self._pending is not None:
            reading, self._pending = await self._pending, None
            out.append(reading.to_event())
        return out

    async def stop(self) -> None:
        held = [t for t in (self._pending, self._reset) if t is not None]
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)

    def _window(self) -> np.ndarray:
        """The last 2 s of audio (shorter at the start of a call)."""
        from avcall.pipelines.nets.emotion_features import WINDOW_SAMPLES

        samples = np.concatenate([a.samples for a in self._audio]) if self._audio else np.zeros(0, np.float32)
        return samples[-WINDOW_SAMPLES:]

    def read(self, pts: float, face: tuple[np.ndarray, np.ndarray] | None, voice: np.ndarray | None) -> EmotionReading:
        """One hop on the worker thread: the face (image, landmarks) cut out, the nets on what was seen and
        heard, fused over the last segments, smoothed."""
        from avcall.pipelines.nets.emotion_features import SpeakerNorm, align_face, face_input, voice_window
        from avcall.pipelines.nets.emotion import CLASSES, valence_arousal

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

