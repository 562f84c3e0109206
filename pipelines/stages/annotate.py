"""Annotation: draws the tracked mesh and the lip outline on the video frame the face was found in.

Video frames and face observations reach this stage separately; they are paired by pts. A frame whose
observation never comes (dropped upstream in a live call) is emitted undrawn once a newer one is paired.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..frames import FaceObservation, Frame, VideoFrame
from ..stage import Stage
from avcall.pipelines.face.mesh import INNER_CONTOUR, OUTER_CONTOUR

MESH_COLOUR = (200, 200, 200)
LIP_COLOUR = (60, 60, 255)


def _mesh_edges() -> np.ndarray:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    return np.array(sorted(FACEMESH_TESSELATION), np.int32)


def draw_face(image: np.ndarray, obs: FaceObservation, edges: np.ndarray) -> np.ndarray:
    out = image.copy()
    if not obs.present or obs.landmarks is None:
        cv2.putText(out, "no face", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 200, 255), 1, cv2.LINE_AA)
        return out
    xy = np.round(obs.landmarks[:, :2]).astype(np.int32)
    lines = xy[edges]  # (edges, 2, 2)
    mesh = out.copy()
    cv2.polylines(mesh, list(lines), False, MESH_COLOUR, 1, cv2.LINE_AA)
    cv2.addWeighted(mesh, 0.4, out, 0.6, 0, dst=out)  # a light mesh that leaves the face visible
    for contour in (OUTER_CONTOUR, INNER_CONTOUR):
        cv2.polylines(out, [xy[contour]], True, LIP_COLOUR, 1, cv2.LINE_AA)
    return out


class Annotator(Stage):
    accepts = (VideoFrame, FaceObservation)
    passthrough = True  # the call goes on without it (see Stage)

    def __init__(self) -> None:
        super().__init__("annotate")
        self._edges = _mesh_edges()
        self._video: dict[float, VideoFrame] = {}
        self._faces: dict[float, FaceObservation] = {}
        self.enabled = True

    def on_control(self, values: dict) -> None:
        if isinstance(values.get("overlay"), bool):
            self.enabled = values["overlay"]

    async def process(self, frame: Frame) -> Sequence[Frame]:
        out: list[Frame] = []
        if isinstance(frame, FaceObservation):
            out.append(frame)
            self._faces[frame.pts] = frame
        else:
            self._video[frame.pts] = frame
        for pts in sorted(self._video.keys() & self._faces.keys()):
            video, obs = self._video.pop(pts), self._faces.pop(pts)
            out.extend(self._orphans_before(pts))
            # the overlay switched off (the served page's toggle) or shed under load: the frame as it came
            if not self.enabled or self.shed("overlay"):
                out.append(video)
                continue
            image = await self.in_worker(draw_face, video.image, obs, self._edges)
            out.append(VideoFrame(pts=pts, image=image, index=video.index))
        return out

    def _orphans_before(self, pts: float) -> list[Frame]:
        stale_video = sorted(p for p in self._video if p < pts)
        for p in [p for p in self._faces if p < pts]:
            del self._faces[p]
        return [self._video.pop(p) for p in stale_video]

    async def flush(self) -> Sequence[Frame]:
        left = [self._video.pop(p) for p in sorted(self._video)]
        self._faces.clear()
        return left
