"""Face tracking: mediapipe face mesh (478 points, refined lips and irises) on every video frame.

Emits the video frame (unchanged, for stages further on) and one FaceObservation per frame, present or not.
With several faces in view it follows one: the largest, and it keeps it — it switches only when another
face has been clearly larger (by `SWITCH_RATIO`) for `SWITCH_FRAMES` frames in a row, so the choice does
not flicker when two faces are of similar size. The other faces ride along in `others`, for the active
speaker stage, which may follow one of them instead (the one whose lips agree with the voice).

How (`tracking`): "crop", the default, runs the mesh on a crop around each tracked face and the face detector on
the whole frame only when a face is lost, has moved, or (fewer faces tracked than `max_faces`) every 10 frames
(`pipelines/face/crop_mesh.py`); "full" hands every whole frame to mediapipe's legacy face-mesh graph, which runs
its detector on every frame in which it tracks fewer than `max_faces` faces. Same models, same landmarks to a
fraction of a pixel, a third less time a frame (`avcall bench tracking`, docs/performance.md).

Confidence: the legacy face-mesh graph does not expose its internal presence score, so the tracker asks
the graph for its face detections as well; confidence is the detector's score for the tracked face (kept
from the last frame it was detected in, since the mesh tracks without re-detecting) times the share of the
mesh that lies inside the image.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import InputError
from ..frames import FaceObservation, Frame, VideoFrame
from ..stage import Stage

TRACKING = "crop"  # or "full": see the module doc
TRACKINGS = ("crop", "full")
SWITCH_RATIO = 1.3
SWITCH_FRAMES = 5
MESH_POINTS = 478


def _area(box: tuple[float, float, float, float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


class FaceSelector:
    """Picks which of the faces in a frame to follow; stable across frames (see module doc)."""

    def __init__(self, switch_ratio: float = SWITCH_RATIO, switch_frames: int = SWITCH_FRAMES) -> None:
        self.switch_ratio = switch_ratio
        self.switch_frames = switch_frames
        self.current: tuple[float, float, float, float] | None = None
        self._challenger_frames = 0

    def choose(self, boxes: Sequence[tuple[float, float, float, float]]) -> int | None:
        if not boxes:
            self.current = None
            self._challenger_frames = 0
            return None
        largest = max(range(len(boxes)), key=lambda i: _area(boxes[i]))
        followed = None
        if self.current is not None:
            overlaps = [iou(self.current, b) for b in boxes]
            best = int(np.argmax(overlaps))
            followed = best if overlaps[best] > 0.3 else None
        if followed is None:
            chosen = largest
            self._challenger_frames = 0
        elif largest != followed and _area(boxes[largest]) > self.switch_ratio * _area(boxes[followed]):
            self._challenger_frames += 1
            chosen = largest if self._challenger_frames >= self.switch_frames else followed
            if chosen == largest:
                self._challenger_frames = 0
        else:
            chosen = followed
            self._challenger_frames = 0
        self.current = boxes[chosen]
        return chosen


@contextlib.contextmanager
def _native_stderr_silenced():
    """mediapipe's C++ side logs its start-up (XNNPACK, feedback tensors) straight to fd 2."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass
class _Face:
    landmarks: np.ndarray  # (478, 3), x and y in pixels
    bbox: tuple[float, float, float, float]


class _LegacyFaceMesh:
    """mediapipe's bundled face mesh (works offline: the model files ship in the 0.10.21 wheel)."""

    def __init__(self, max_faces: int) -> None:
        from mediapipe.python.solution_base import SolutionBase
        from mediapipe.python.solutions import face_mesh

        self._quiet_frames = 10  # the models load lazily and log from the graph's threads meanwhile
        with _native_stderr_silenced():
            self._graph = SolutionBase(
                binary_graph_path=face_mesh._BINARYPB_FILE_PATH,
                side_inputs={"num_faces": max_faces, "with_attention": True, "use_prev_landmarks": True},
                calculator_params={
                    "facedetectionshortrangecpu__facedetectionshortrange__facedetection__"
                    "TensorsToDetectionsCalculator.min_score_thresh": 0.5,
                    "facelandmarkcpu__ThresholdingCalculator.threshold": 0.5,
                },
                outputs=["multi_face_landmarks", "face_detections"])
            # The graph loads its models on threads of its own once it runs: make that happen here.
            self._graph.process({"image": np.zeros((64, 64, 3), np.uint8)})

    def detect(self, bgr: np.ndarray) -> tuple[list[_Face], list[tuple[tuple[float, ...], float]]]:
        h, w = bgr.shape[:2]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self._quiet_frames:
            self._quiet_frames -= 1
            with _native_stderr_silenced():
                result = self._graph.process({"image": rgb})
        else:
            result = self._graph.process({"image": rgb})
        faces = []
        for lm in result.multi_face_landmarks or []:
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in lm.landmark], np.float32)
            faces.append(_Face(pts, (float(pts[:, 0].min()), float(pts[:, 1].min()),
                                     float(pts[:, 0].max()), float(pts[:, 1].max()))))
        detections = []
        for d in result.face_detections or []:
            box = d.location_data.relative_bounding_box
            detections.append(((box.xmin * w, box.ymin * h, (box.xmin + box.width) * w,
                                (box.ymin + box.height) * h), float(d.score[0])))
        return faces, detections

    def close(self) -> None:
        self._graph.close()


class _CropFaceMesh:
    """The same models as _LegacyFaceMesh, the mesh on a crop around each tracked face, the detector only when
    needed (`pipelines/face/crop_mesh.py`)."""

    def __init__(self, max_faces: int) -> None:
        from ..face.crop_mesh import CropFaceMesh

        with _native_stderr_silenced():  # the models load (and log) on the graphs' first runs: make that happen here
            self.mesh = CropFaceMesh(max_faces)
            self.mesh.warm()

    def detect(self, bgr: np.ndarray) -> tuple[list[_Face], list[tuple[tuple[float, ...], float]]]:
        faces, detections = self.mesh.detect(bgr)
        return [_Face(landmarks, bbox) for landmarks, bbox in faces], detections

    def close(self) -> None:
        self.mesh.close()


class _TaskFaceLandmarker:
    """A newer mediapipe FaceLandmarker `.task` file given with --face-model (no detection scores)."""

    def __init__(self, model_path: Path, max_faces: int) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.VIDEO, num_faces=max_faces)
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self._t_ms = 0

    def detect(self, bgr: np.ndarray) -> tuple[list[_Face], list]:
        import mediapipe as mp

        h, w = bgr.shape[:2]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self._t_ms += 1  # VIDEO mode wants increasing timestamps; the values are not used otherwise
        result = self._landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb),
                                                   self._t_ms)
        faces = []
        for lm in result.face_landmarks:
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in lm], np.float32)
            faces.append(_Face(pts, (float(pts[:, 0].min()), float(pts[:, 1].min()),
                                     float(pts[:, 0].max()), float(pts[:, 1].max()))))
        return faces, []

    def close(self) -> None:
        self._landmarker.close()


class FaceTracker(Stage):
    accepts = (VideoFrame,)
    passthrough = True  # the call goes on without it (see Stage)

    def __init__(self, *, max_faces: int = 2, model_path: str | Path | None = None, tracking: str = TRACKING) -> None:
        super().__init__("face_tracker")
        if tracking not in TRACKINGS:
            raise InputError(f"tracking {tracking!r}: one of {', '.join(TRACKINGS)}")
        self.max_faces = max_faces
        self.tracking = tracking
        self.model_path = Path(model_path) if model_path else None
        self.selector = FaceSelector()
        self._mesh = None
        self._track_score = 0.0
        self._last: FaceObservation | None = None

    async def start(self) -> None:
        await self.in_worker(self.open)

    def open(self) -> None:
        """Load the face model (blocking). The stage does it at start, on its worker thread; a tool that calls
        `observe` directly calls `open` and `close` on its own thread (mediapipe's graphs keep to one)."""
        if self.model_path is not None and not self.model_path.is_file():
            raise InputError(f"--face-model {self.model_path}: no such file")
        self._mesh = self._open()

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def _open(self):
        if self.model_path is None:
            return _CropFaceMesh(self.max_faces) if self.tracking == "crop" else _LegacyFaceMesh(self.max_faces)
        try:
            return _TaskFaceLandmarker(self.model_path, self.max_faces)
        except (RuntimeError, ValueError) as err:
            raise InputError(f"--face-model {self.model_path}: not a mediapipe FaceLandmarker .task "
                             f"file ({str(err).splitlines()[0][:100]})") from None

    def faces(self, image_bgr: np.ndarray) -> list:
        """Every face the mesh finds in one image (blocking; after `open`), each with its landmarks and box, in no
        particular order: for tools that follow every face of a clip (`avcall sync`), not only the speaker."""
        return self._mesh.detect(image_bgr)[0]

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if self._last is not None and self.shed("video_analysis"):  # under load: the last face held a frame
            return [frame, replace(self._last, pts=frame.pts, image_size=frame.size)]
        self._last = await self.in_worker(self.observe, frame)
        return [frame, self._last]

    def observe(self, frame: VideoFrame) -> FaceObservation:
        """Track the face in one frame (blocking; runs on the stage's worker thread)."""
        w, h = frame.size
        faces, detections = self._mesh.detect(frame.image)
        chosen = self.selector.choose([f.bbox for f in faces])
        if chosen is None:
            self._track_score = 0.0
            return FaceObservation(pts=frame.pts, present=False, confidence=0.0, image_size=(w, h))
        face = faces[chosen]
        if detections:
            overlaps = [iou(face.bbox, box) for box, _ in detections]
            best = int(np.argmax(overlaps))
            if overlaps[best] > 0.2:
                self._track_score = detections[best][1]
        elif self._track_score == 0.0:  # no detector output at all (a .task model): the mesh's own verdict
            self._track_score = 1.0
        xy = face.landmarks[:, :2]
        inside = float(np.mean((xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)))
        others = tuple((f.landmarks, f.bbox) for i, f in enumerate(faces) if i != chosen)
        return FaceObservation(pts=frame.pts, present=True, confidence=self._track_score * inside,
                               landmarks=face.landmarks, bbox=face.bbox, image_size=(w, h),
                               faces_seen=len(faces), others=others)

    async def stop(self) -> None:
        if self._mesh is not None:
            await self.in_worker(self.close)
