"""The active speaker: with several faces in view, follow the one whose lips agree with the voice.

FaceObservation (the tracker's choice, with the other faces it saw in `others`) and AudioFrame in. Each face
is followed across frames by the overlap of its box; every `every_s` the sync judge scores the last `span_s`
of each face's lips against the voice (its speaking score: how much better they match in sync than shifted,
on the stage's worker, behind the frames: it never holds them up). A face that scores MIN_SCORE and
MARGIN above every other on SWITCH_VOTES judgements in a row (or on one, by CLEAR times those) becomes the
speaker, and the observation that
goes on is of that face (the tracker's choice moves to `others`). When nobody clearly speaks for
RELEASE_VOTES judgements, the tracker's choice (the largest face, kept stably) stands again. One face in
view: nothing to choose, nothing judged.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Sequence

from ..frames import AudioFrame, FaceObservation, Frame, LipFeatures
from ..stage import Stage
from .face_tracker import iou
from avcall.pipelines.face.mesh import lip_features
from .sync_monitor import judge_signals

MIN_SCORE = 0.03  # the judge's speaking score (median distance over offsets minus the in-sync one)
MARGIN = 0.03
SWITCH_VOTES = 2
CLEAR = 2  # a pick this many times over MIN_SCORE and MARGIN switches on its own (a speaker scores ~0.1)
RELEASE_VOTES = 4
MAX_OFFSET = 7  # offsets the score looks over, in frames: enough for its median, a third of the full curve's cost
TRACK_LOST_S = 1.0
AUDIO_AHEAD_S = 30.0


@dataclass
class _Face:
    id: int
    bbox: tuple[float, float, float, float]
    seen_at: float
    lips: deque = field(default_factory=deque)  # LipFeatures of this face, the last span


class ActiveSpeaker(Stage):
    accepts = (FaceObservation, AudioFrame)
    passthrough = True  # the call goes on without it (see Stage)

    def __init__(self, judge=None, *, span_s: float = 2.0, every_s: float = 0.5, name: str = "active_speaker") -> None:
        super().__init__(name)
        self.judge, self.span_s, self.every_s = judge, span_s, every_s
        self._faces: list[_Face] = []
        self._next_id = 0
        self._audio: deque[AudioFrame] = deque()
        self._video_at = float("-inf")  # pts of the latest observation
        self.speaker: int | None = None  # the id of the face followed for speaking
        self._votes: tuple[int | None, int] = (None, 0)  # the latest judgement's pick, and how many in a row
        self._next_at: float | None = None
        self._pending: asyncio.Future | None = None

    async def start(self) -> None:
        if self.judge is None:
            from avcall.pipelines.nets.sync_judge import SyncJudge

            self.judge = await self.in_worker(SyncJudge)

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if isinstance(frame, AudioFrame):
            self._audio.append(frame)
            self._trim_audio()
            return [frame]
        obs = frame
        self._video_at = obs.pts
        self._trim_audio()
        faces = [(obs.landmarks, obs.bbox), *obs.others] if obs.present else []
        ids = self._follow(faces, obs.pts)
        if self._pending is not None and self._pending.done():
            scores, self._pending = self._pending.result(), None
            self._vote(scores)
        if self._next_at is None or obs.pts >= self._next_at:
            self._next_at = obs.pts + self.every_s
            ready = [f for f in self._faces if len(f.lips) >= 25 and obs.pts - f.seen_at < self.every_s]
            if len(ready) >= 2 and self._pending is None and self._audio:
                self._pending = asyncio.ensure_future(self.in_worker(
                    self._scores, {f.id: list(f.lips) for f in ready}, list(self._audio)))
        if self.speaker in ids and ids.index(self.speaker) != 0:
            k = ids.index(self.speaker)
            landmarks, bbox = faces[k]
            others = tuple(f for i, f in enumerate(faces) if i != k)
            return [replace(obs, landmarks=landmarks, bbox=bbox, others=others)]
        return [obs]

    def _trim_audio(self) -> None:
        """Keep the voice of the faces' span (offline, the audio may run ahead of the video: up to AUDIO_AHEAD_S)."""
        while self._audio and (self._video_at - self._audio[0].pts > self.span_s + 1.0
                               or self._audio[-1].pts - self._audio[0].pts > AUDIO_AHEAD_S):
            self._audio.popleft()

    def _follow(self, faces: list, pts: float) -> list[int]:
        """The id of each face in this frame: the face of the last frames it overlaps most, or a new one."""
        self._faces = [f for f in self._faces if pts - f.seen_at <= TRACK_LOST_S]
        ids, taken = [], set()
        for landmarks, bbox in faces:
            overlaps = [(iou(f.bbox, bbox), f) for f in self._faces if f.id not in taken]
            best = max(overlaps, key=lambda o: o[0], default=(0.0, None))
            face = best[1] if best[0] > 0.3 else None
            if face is None:
                face = _Face(self._next_id, bbox, pts)
                self._next_id += 1
                self._faces.append(face)
            face.bbox, face.seen_at = bbox, pts
            face.lips.append(lip_features(FaceObservation(pts=pts, present=True, confidence=1.0, landmarks=landmarks,
                                                          bbox=bbox)))
            while pts - face.lips[0].pts > self.span_s:
                face.lips.popleft()
            ids.append(face.id)
            taken.add(face.id)
        return ids

    def _scores(self, lips_by_face: dict[int, list[LipFeatures]], audio: list[AudioFrame]) -> dict[int, float]:
        scores = {}
        for face, lips in lips_by_face.items():
            signals = judge_signals(lips, audio, self.span_s)
            if signals is not None:
                scores[face] = self.judge.speaking_score(*signals, max_offset=MAX_OFFSET)
        return scores

    def _vote(self, scores: dict[int, float]) -> None:
        ranked = sorted(scores.items(), key=lambda s: s[1], reverse=True)
        pick, clear = None, False
        if len(ranked) >= 2 and ranked[0][1] >= MIN_SCORE and ranked[0][1] - ranked[1][1] >= MARGIN:
            pick = ranked[0][0]
            clear = ranked[0][1] >= CLEAR * MIN_SCORE and ranked[0][1] - ranked[1][1] >= CLEAR * MARGIN
        votes = self._votes[1] + 1 if pick == self._votes[0] else 1
        self._votes = (pick, votes)
        if pick is not None and pick != self.speaker and (votes >= SWITCH_VOTES or clear):
            self.speaker = pick
            self.incidents.note("active_speaker", None, face=pick, score=round(ranked[0][1], 3))
        elif pick is None and self.speaker is not None and votes >= RELEASE_VOTES:
            self.speaker = None
            self.incidents.note("active_speaker", None, face=None)

    async def stop(self) -> None:
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
