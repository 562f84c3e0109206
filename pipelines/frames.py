"""The frames that move through a pipeline, readable top to bottom.

Every frame carries `pts`: seconds on the one session clock, stamped at capture (live sources) or taken
from the container's timestamps (files). Stages align streams by `pts`, never by arrival order.

`droppable` says what a queue may do when a stage falls behind in a live session: video and what is
derived from a single video frame is latest-frame-wins; audio, lip features and events are never dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np

SAMPLE_RATE = 16_000  # audio inside the pipeline: 16 kHz mono float32
HOP_SAMPLES = 160  # 10 ms hops
LIP_POINTS = 40  # the lip contour points of the face mesh (20 outer, 20 inner)
VIDEO_FPS = 25.0  # the video rate the lip features, the nets on them and the talking face run at


@dataclass(frozen=True)
class Frame:
    pts: float
    droppable: ClassVar[bool] = False


@dataclass(frozen=True)
class AudioFrame(Frame):
    """16 kHz mono float32 samples in [-1, 1]; `pts` is the time of the first sample."""

    samples: np.ndarray = field(repr=False)
    sample_rate: int = SAMPLE_RATE
    # the lip gate's gain per sample, on these samples' time (pipelines/stages/lip_gate.py); None: no gate, open
    gate: np.ndarray | None = field(default=None, repr=False)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class VideoFrame(Frame):
    """One BGR uint8 image (OpenCV's layout), shape (height, width, 3)."""

    image: np.ndarray = field(repr=False)
    index: int = 0  # running number at the source, to tell dropped frames
    droppable: ClassVar[bool] = True

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


@dataclass(frozen=True)
class FaceObservation(Frame):
    """The tracked face in one video frame. No face is a normal state: `present=False`, `confidence=0`."""

    present: bool
    confidence: float
    landmarks: np.ndarray | None = field(default=None, repr=False)  # (478, 3) x, y in pixels, z relative
    bbox: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in pixels
    image_size: tuple[int, int] = (0, 0)  # width, height
    faces_seen: int = 0
    # the other faces in the frame, each (landmarks, bbox): the active speaker may be one of them
    others: tuple = field(default=(), repr=False)
    droppable: ClassVar[bool] = True


@dataclass(frozen=True)
class LipFeatures(Frame):
    """Pose- and scale-normalised mouth shape of one video frame.

    `shape` is (40, 2): the lip contour points translated to the mouth centre, divided by the inter-ocular
    distance and rotated so the eye line is horizontal. `opening` is the inner-lip gap over the
    inter-ocular distance, `width` the corner-to-corner distance likewise. Zeros when `present` is False.
    """

    present: bool
    confidence: float
    shape: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((LIP_POINTS, 2), np.float32))
    opening: float = 0.0
    width: float = 0.0


@dataclass(frozen=True)
class Event(Frame):
    """Something the user or another process should hear about (captions, warnings, telemetry)."""

    kind: str = ""
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Control(Frame):
    """Control frame: a user's switch (the served page's toggles), by name: "enhance" (a suppressor or "off"),
    "overlay" (bool), "avatar" ("off", "voice", "reenact"), "emotion" (bool). It overtakes media (it enters
    each stage's queue at the front) and visits every stage in order; each takes the names it knows
    (`Stage.on_control`)."""

    values: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EndOfStream(Frame):
    """Control frame: the sources are done; each stage flushes, then passes it on."""

    pts: float = 0.0


@dataclass(frozen=True)
class Word:
    """A word a recogniser heard, with its times."""

    text: str
    start: float  # seconds
    end: float

    def shifted(self, seconds: float) -> Word:
        return Word(self.text, self.start + seconds, self.end + seconds)


@dataclass(frozen=True)
class Caption:
    """A caption line as the captioner sends it (the data of its `caption` Events) and the sinks write it."""

    kind: str  # "partial" or "final"
    text: str
    start: float  # session seconds: the line's first word (partials: where the line started)
    end: float  # the last word's end (partials: the audio heard so far)
    emitted: float  # session seconds of audio heard when it was emitted
    line: int  # running number of the spoken line (pause to pause): a long line comes as several finals
    words: tuple[Word, ...] = ()
    language: str = ""  # the recogniser's language code on a final ("en", "de", ...; "" when it does not say)

    def to_json(self) -> dict:
        d = asdict(self)
        d["words"] = [asdict(w) for w in self.words]
        return d

    @classmethod
    def from_json(cls, d: dict) -> Caption:
        return cls(**(d | {"words": tuple(Word(**w) for w in d.get("words", ()))}))
