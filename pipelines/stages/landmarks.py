"""The overlay as landmarks: a WebRTC call sends the page the points of the tracked face it draws (the lips, the
face's outline, eyes and brows: 128 points), not a picture with them drawn in; the page draws them over the camera
frames it shows, the frame the call saw (app/static/overlay.js).

One message a video frame on the data channel (`{"type": "landmarks", ...}`, JSON):
- `pts`: the frame's time on the call's clock (its arrival here); `rtp`: its RTP timestamp (the sender's 90 kHz
  clock, unwrapped), which is the page's capture time of the same frame plus a constant;
- `thumb` (every THUMB_EVERY frames): the frame's luma as 16x12 block means (base64 bytes), with which the page
  finds that constant once: the local frame whose own blocks match best, over a few such messages. From then on
  it pairs its frames with the landmarks of their capture time, exactly, without any clock shared with the
  server. (A browser's RTCP sender reports do not help: Chromium's NTP time in them is not the page's clock.)
- `size`: the frame's width and height; `face`: whether a face was tracked;
- `points`: base64 of little-endian int16 (x, y) pairs in quarter pixels of the frame; `lines`: how they
  chain into polylines, `[count, closed]` each, in order (the outer lips, the inner lips, then the rest).
About 1.0 kB a frame, 200 kbit/s at 25 fps (`sent_bytes`; `landmark_bytes_per_frame` in the call's telemetry),
where the annotated video it replaces took a VP8 encode of every frame and its bitrate.
"""

from __future__ import annotations

import base64
import json
from typing import Callable, Sequence

import numpy as np

from ..face.mesh import INNER_CONTOUR, OUTER_CONTOUR
from ..frames import Event, FaceObservation, Frame, VideoFrame
from ..stage import Stage

QUANT = 4  # quarter pixels
THUMB_SIZE = (16, 12)  # the frame's luma in blocks, for the page to find the frame by (width, height)
THUMB_EVERY = 4  # frames


def _chains(edges) -> list[tuple[list[int], bool]]:
    """A set of mesh edges as polylines: (indices in order, closed)."""
    adjacent: dict[int, list[int]] = {}
    for a, b in edges:
        adjacent.setdefault(a, []).append(b)
        adjacent.setdefault(b, []).append(a)
    unused = {frozenset(e) for e in edges}
    chains = []
    while unused:
        ends = [n for n, near in adjacent.items() if sum(frozenset((n, m)) in unused for m in near) == 1]
        start = min(ends) if ends else min(min(e) for e in unused)
        path = [start]
        while True:
            step = next((m for m in sorted(adjacent[path[-1]]) if frozenset((path[-1], m)) in unused), None)
            if step is None:
                break
            unused.discard(frozenset((path[-1], step)))
            path.append(step)
        closed = len(path) > 2 and path[-1] == path[0]
        chains.append((path[:-1] if closed else path, closed))
    return chains


def overlay_lines() -> list[tuple[list[int], bool]]:
    """The polylines the page draws, the lips first (OUTER_CONTOUR, INNER_CONTOUR: 40 points)."""
    from mediapipe.python.solutions import face_mesh_connections as fm

    lines = [(list(OUTER_CONTOUR), True), (list(INNER_CONTOUR), True)]
    for edges in (fm.FACEMESH_FACE_OVAL, fm.FACEMESH_LEFT_EYE, fm.FACEMESH_RIGHT_EYE, fm.FACEMESH_LEFT_EYEBROW,
                  fm.FACEMESH_RIGHT_EYEBROW):
        lines.extend(_chains(edges))
    return lines


def encode_points(xy: np.ndarray) -> str:
    q = np.clip(np.round(np.asarray(xy, np.float64) * QUANT), -32768, 32767).astype("<i2")
    return base64.b64encode(q.tobytes()).decode("ascii")


def decode_points(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<i2").reshape(-1, 2).astype(np.float32) / QUANT


def thumbnail(image: np.ndarray) -> str:
    """A frame's luma as THUMB_SIZE block means (bytes, base64): the page computes the same of its frames."""
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return base64.b64encode(cv2.resize(gray, THUMB_SIZE, interpolation=cv2.INTER_AREA).tobytes()).decode("ascii")


class RtpUnwrap:
    """32-bit RTP timestamps as one growing count (the sender's start is random: it may wrap within a call)."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.cycles = 0

    def __call__(self, rtp: int) -> int:
        if self.last is not None and rtp - self.last < -2**31:
            self.cycles += 1
        elif self.last is not None and rtp - self.last > 2**31:
            return rtp + (self.cycles - 1) * 2**32  # a late frame from before the wrap
        self.last = rtp
        return rtp + self.cycles * 2**32


class LandmarkSender(Stage):
    """Each face observation's overlay points as a "landmarks" event (the data channel takes it to the page),
    with its frame's RTP timestamp (`rtp`: a frame's pts -> it, None where not known) and now and then its
    thumbnail; frames and observations pass on. The page's overlay toggle switches it (nothing sent while off)."""

    accepts = (VideoFrame, FaceObservation)
    passthrough = True  # the call goes on without it (see Stage)

    def __init__(self, rtp: Callable[[float], int | None] | None = None) -> None:
        super().__init__("landmarks")
        self.rtp = rtp or (lambda pts: None)
        self.lines = overlay_lines()
        self._index = np.array([i for line, _ in self.lines for i in line])
        self._layout = [[len(line), closed] for line, closed in self.lines]
        self._thumbs: dict[float, str] = {}  # pts -> the thumbnail of a frame whose observation is still to come
        self.enabled = True
        self.sent_frames = self.sent_bytes = 0
        self.recent: dict[float, np.ndarray] = {}  # pts -> the points sent (the last few seconds; tests read them)

    def on_control(self, values: dict) -> None:
        if isinstance(values.get("overlay"), bool):
            self.enabled = values["overlay"]

    def message(self, obs: FaceObservation) -> dict:
        face = bool(obs.present and obs.landmarks is not None)
        xy = obs.landmarks[self._index, :2] if face else np.zeros((0, 2))
        data = {"pts": round(obs.pts, 4), "rtp": self.rtp(obs.pts), "size": list(obs.image_size), "face": face,
                "points": encode_points(xy), "lines": self._layout}
        if obs.pts in self._thumbs:
            data["thumb"] = self._thumbs.pop(obs.pts)
        return data

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if not self.enabled:
            return [frame]
        if isinstance(frame, VideoFrame):  # before its observation (the tracker sends both, the frame first)
            if frame.index % THUMB_EVERY == 0 or self.sent_frames < 25:
                self._thumbs[frame.pts] = thumbnail(frame.image)
                while len(self._thumbs) > 8:
                    del self._thumbs[next(iter(self._thumbs))]
            return [frame]
        data = self.message(frame)
        self.sent_frames += 1
        self.sent_bytes += len(json.dumps(data)) + 20  # the message as the channel sends it ({"type": ...})
        if data["face"]:
            self.recent[data["pts"]] = decode_points(data["points"])
            while len(self.recent) > 300:
                del self.recent[next(iter(self.recent))]
        return [frame, Event(pts=frame.pts, kind="landmarks", data=data)]
