"""Face tracking at the rate the lips need (issue 32, point 3): the face mesh on a crop around each tracked face,
full-frame detection only when it is needed.

mediapipe's legacy face-mesh graph (`face_landmark_front_cpu`, what `FaceTracker` ran on every frame before) runs
its face detector on the whole frame at every frame in which it tracks fewer faces than it may (`num_faces`: 2 in
a call, so with one person in view, every frame), then the mesh on a region taken from the previous frame's
landmarks. Measured on one core (640x480, `avcall bench tracking`): the detector is about a third of its time and
reading the 478 landmarks out of their protobuf packet another sixth. This module runs the same two parts of
mediapipe (the `FaceDetectionShortRangeCpu` and `FaceLandmarkCpu` subgraphs of that graph, the same models and
thresholds, the same region rules `FaceDetectionFrontDetectionToRoi` and `FaceLandmarkLandmarksToRoi`) as two
graphs of its own, so that avcall decides when each runs:

- the mesh, every frame, on a crop of the frame around the region the last landmarks give (the region's bounding
  box and two pixels); the crop alone is converted to RGB and copied into mediapipe. Landmarks come back
  normalised to the crop and are mapped back to frame pixels exactly (x = x0 + u * crop width; with `mesh_px` the
  crop is first scaled down so that the region's side is at most that, and the scale drops out of the mapping,
  since a normalised coordinate does not depend on how many pixels the crop was resampled to). Scaling is off:
  measured, the mesh's time is its model's (its input is 192x192 whatever it is handed: 3.5 ms for the whole
  640x480 frame, a 403-pixel crop or that crop scaled to 202 pixels), and scaling moves the lips (0.3 pixel at
  256, 0.5 at 192 on a 380-pixel region) for nothing;
- the detector, on the whole frame, only when a face is lost (the mesh's presence score under 0.5, or no face
  tracked: it is looked for on the same frame, where it was or anywhere), when the tracked face moved more than
  `move_margin` of its size since the last frame (the mesh is re-anchored on the detector's region), and every
  `redetect_every` frames while fewer than `max_faces` faces are tracked (to see a second face come into view; the
  legacy graph looks every frame). A detection that overlaps a
  tracked face (IoU of their regions over 0.5, as the legacy graph's association) refreshes that face's detector
  score and does not move it.

The landmarks are read from the packet's serialised bytes with numpy (a fixed 17-byte record per point) instead of
a protobuf object per point; anything else falls back to protobuf.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

MESH_INPUT = 192  # the face mesh's input, pixels a side
MESH_PX = None  # scale crops whose region is larger than this many pixels down to it: off, it gains nothing (doc)
REDETECT_EVERY = 10  # frames between detections while fewer than max_faces faces are tracked (0.4 s at 25 fps)
MOVE_MARGIN = 0.25  # a face whose box centre moved more than this share of its size in one frame is re-detected
SAME_FACE_IOU = 0.5  # a detection whose region overlaps a tracked face's this much is that face
PAD = 2  # pixels around the region's bounding box in the crop (bilinear sampling at its edge)

_LANDMARK_GRAPH = """
input_stream: "IMAGE:image"
input_stream: "ROI:roi"
input_side_packet: "WITH_ATTENTION:with_attention"
output_stream: "LANDMARKS:landmarks"
output_stream: "NEXT_ROI:next_roi"
node { calculator: "ImagePropertiesCalculator" input_stream: "IMAGE:image" output_stream: "SIZE:image_size" }
node { calculator: "FaceLandmarkCpu" input_stream: "IMAGE:image" input_stream: "ROI:roi"
       input_side_packet: "WITH_ATTENTION:with_attention" output_stream: "LANDMARKS:landmarks" }
node { calculator: "FaceLandmarkLandmarksToRoi" input_stream: "LANDMARKS:landmarks"
       input_stream: "IMAGE_SIZE:image_size" output_stream: "ROI:next_roi" }
"""

_DETECTION_GRAPH = """
input_stream: "IMAGE:image"
output_stream: "DETECTIONS:detections"
output_stream: "ROIS:rois"
node { calculator: "FaceDetectionShortRangeCpu" input_stream: "IMAGE:image" output_stream: "DETECTIONS:detections" }
node { calculator: "ImagePropertiesCalculator" input_stream: "IMAGE:image" output_stream: "SIZE:image_size" }
node { calculator: "BeginLoopDetectionCalculator" input_stream: "ITERABLE:detections"
       input_stream: "CLONE:image_size" output_stream: "ITEM:detection" output_stream: "CLONE:loop_image_size"
       output_stream: "BATCH_END:loop_end" }
node { calculator: "FaceDetectionFrontDetectionToRoi" input_stream: "DETECTION:detection"
       input_stream: "IMAGE_SIZE:loop_image_size" output_stream: "ROI:roi" }
node { calculator: "EndLoopNormalizedRectCalculator" input_stream: "ITEM:roi" input_stream: "BATCH_END:loop_end"
       output_stream: "ITERABLE:rois" }
"""

# One NormalizedLandmark as serialised when only x, y, z are set: field 1 (length-delimited, 15 bytes) holding
# fields 1, 2, 3 (fixed32 floats).
_RECORD = np.dtype([("tag", "u1"), ("len", "u1"), ("tx", "u1"), ("x", "<f4"), ("ty", "u1"), ("y", "<f4"),
                    ("tz", "u1"), ("z", "<f4")])


@dataclass
class Region:
    """The mesh's region of a face, in frame pixels: centre, size, rotation (radians), as mediapipe's NormalizedRect."""

    cx: float
    cy: float
    w: float
    h: float
    rotation: float = 0.0

    def corners(self) -> np.ndarray:
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * (self.w / 2, self.h / 2)
        return half @ np.array([[c, s], [-s, c]]) + (self.cx, self.cy)

    def box(self) -> tuple[float, float, float, float]:
        pts = self.corners()
        return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


@dataclass
class Tracked:
    region: Region
    score: float  # the detector's score, from the last detection of this face
    landmarks: np.ndarray | None = None  # (478, 3), frame pixels
    bbox: tuple[float, float, float, float] | None = None


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class _Graph:
    """A mediapipe graph run one timestamp at a time from this thread."""

    def __init__(self, text: str, outputs: list[str], side: dict | None = None) -> None:
        import mediapipe
        from google.protobuf import text_format
        from mediapipe.framework import calculator_pb2
        from mediapipe.python._framework_bindings import calculator_graph, resource_util

        resource_util.set_resource_dir(os.path.dirname(os.path.dirname(mediapipe.__file__)))  # as SolutionBase
        self._graph = calculator_graph.CalculatorGraph(
            graph_config=text_format.Parse(text, calculator_pb2.CalculatorGraphConfig()))
        self._out: dict = {}
        for name in outputs:
            self._graph.observe_output_stream(name, self._keep, True)
        self._graph.start_run(side or {})
        self._t = 0

    def _keep(self, name, packet) -> None:
        self._out[name] = packet

    def run(self, rgb: np.ndarray, **protos) -> dict:
        import mediapipe
        from mediapipe.python import packet_creator

        self._out.clear()
        self._t += 1
        self._graph.add_packet_to_input_stream(
            "image", packet_creator.create_image_frame(rgb, image_format=mediapipe.ImageFormat.SRGB).at(self._t))
        for name, message in protos.items():
            self._graph.add_packet_to_input_stream(name, packet_creator.create_proto(message).at(self._t))
        self._graph.wait_until_idle()
        return {name: p for name, p in self._out.items() if not p.is_empty()}

    def close(self) -> None:
        self._graph.close()


def _normalised_landmarks(packet) -> np.ndarray:
    from mediapipe.python._framework_bindings import _packet_getter

    raw = _packet_getter._get_serialized_proto(packet)
    if raw and len(raw) % _RECORD.itemsize == 0:
        rec = np.frombuffer(raw, _RECORD)
        if ((rec["tag"] == 0x0A) & (rec["len"] == 15) & (rec["tx"] == 0x0D) & (rec["ty"] == 0x15)
                & (rec["tz"] == 0x1D)).all():
            return np.stack([rec["x"], rec["y"], rec["z"]], axis=1)
    from mediapipe.framework.formats import landmark_pb2

    msg = landmark_pb2.NormalizedLandmarkList()
    msg.ParseFromString(raw)
    return np.array([(p.x, p.y, p.z) for p in msg.landmark], np.float32).reshape(-1, 3)


class CropFaceMesh:
    """`detect(frame_bgr)` -> (faces as (landmarks (478, 3) in pixels, box), detector boxes with scores), the
    interface of FaceTracker's legacy mesh; see the module doc for what runs when."""

    def __init__(self, max_faces: int, *, mesh_px: int | None = MESH_PX, redetect_every: int = REDETECT_EVERY,
                 move_margin: float = MOVE_MARGIN) -> None:
        from mediapipe.python import packet_creator

        self.max_faces = max_faces
        self.mesh_px = mesh_px
        self.redetect_every = redetect_every
        self.move_margin = move_margin
        self._mesh = _Graph(_LANDMARK_GRAPH, ["landmarks", "next_roi"],
                            {"with_attention": packet_creator.create_bool(True)})
        self._detector = _Graph(_DETECTION_GRAPH, ["detections", "rois"])
        self._tracked: list[Tracked] = []
        self._since_detection = 0
        self.detections_run = 0  # for the benchmark: how often the detector ran
        self.frames = 0

    def warm(self) -> None:
        """Run both graphs once on a blank image: mediapipe loads their models on their first run."""
        from mediapipe.framework.formats import rect_pb2

        blank = np.zeros((64, 64, 3), np.uint8)
        self._detector.run(blank)
        self._mesh.run(blank, roi=rect_pb2.NormalizedRect(x_center=0.5, y_center=0.5, width=1.0, height=1.0))

    def close(self) -> None:
        self._mesh.close()
        self._detector.close()

    # -- the two graphs

    def _detect(self, frame_bgr: np.ndarray) -> list[tuple[Region, tuple, float]]:
        from mediapipe.python import packet_getter

        self.detections_run += 1
        self._since_detection = 0
        h, w = frame_bgr.shape[:2]
        out = self._detector.run(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        if "detections" not in out or "rois" not in out:
            return []
        found = []
        for d, r in zip(packet_getter.get_proto_list(out["detections"]), packet_getter.get_proto_list(out["rois"])):
            b = d.location_data.relative_bounding_box
            found.append((Region(r.x_center * w, r.y_center * h, r.width * w, r.height * h, r.rotation),
                          (b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h), float(d.score[0])))
        found.sort(key=lambda f: -f[2])
        return found[:self.max_faces]

    def _mesh_on(self, frame_bgr: np.ndarray, region: Region) -> tuple[np.ndarray, Region] | None:
        """The mesh in `region` of the frame: its landmarks in frame pixels and the region they give for the next
        frame, or None when the mesh does not see a face there."""
        from mediapipe.framework.formats import rect_pb2
        from mediapipe.python import packet_getter

        fh, fw = frame_bgr.shape[:2]
        bx0, by0, bx1, by1 = region.box()
        x0, y0 = max(0, math.floor(bx0) - PAD), max(0, math.floor(by0) - PAD)
        x1, y1 = min(fw, math.ceil(bx1) + PAD), min(fh, math.ceil(by1) + PAD)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        cw, ch = x1 - x0, y1 - y0
        crop = frame_bgr[y0:y1, x0:x1]
        scale = min(1.0, self.mesh_px / max(region.w, region.h, 1.0)) if self.mesh_px else 1.0
        if scale < 1.0:
            crop = cv2.resize(crop, (max(1, round(cw * scale)), max(1, round(ch * scale))),
                              interpolation=cv2.INTER_AREA)
        roi = rect_pb2.NormalizedRect(x_center=(region.cx - x0) / cw, y_center=(region.cy - y0) / ch,
                                      width=region.w / cw, height=region.h / ch, rotation=region.rotation)
        out = self._mesh.run(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), roi=roi)
        if "landmarks" not in out:
            return None
        uvz = _normalised_landmarks(out["landmarks"])
        pts = np.empty_like(uvz)
        pts[:, 0] = x0 + uvz[:, 0] * cw
        pts[:, 1] = y0 + uvz[:, 1] * ch
        pts[:, 2] = uvz[:, 2] * cw  # mediapipe's z is in units of the image's width, as x
        nxt = packet_getter.get_proto(out["next_roi"]) if "next_roi" in out else None
        if nxt is None:
            return None
        return pts, Region(x0 + nxt.x_center * cw, y0 + nxt.y_center * ch, nxt.width * cw, nxt.height * ch,
                           nxt.rotation)

    # -- the policy

    def detect(self, frame_bgr: np.ndarray) -> tuple[list, list]:
        self.frames += 1
        self._since_detection += 1
        detected = False
        if not self._tracked or (len(self._tracked) < self.max_faces
                                 and self._since_detection >= self.redetect_every):
            self._merge(self._detect(frame_bgr))
            detected = True
        kept, found = [], []
        for face in self._tracked:
            result = self._mesh_on(frame_bgr, face.region)
            if result is not None and face.bbox is not None and not detected and self._moved(face.bbox, result[0]):
                # moved further than the region should be trusted for: re-anchor on the detector's region
                found = self._detect(frame_bgr)
                detected = True
                match = self._match(result[1], found)
                if match is not None:
                    face.score = match[2]
                    result = self._mesh_on(frame_bgr, match[0]) or result
            if result is None:  # lost: look for it on this frame, unless the detector already ran on it
                if detected:
                    continue
                found = self._detect(frame_bgr)
                detected = True
                match = self._match(face.region, found)
                if match is None:
                    continue  # not where it was: it may be among the detections taken up below
                face.score = match[2]
                result = self._mesh_on(frame_bgr, match[0])
                if result is None:
                    continue
            self._place(face, result)
            kept.append(face)
        for region, _box, score in found:  # a detection run above for one face may have seen others, or it elsewhere
            if len(kept) >= self.max_faces:
                break
            if all(_iou(f.region.box(), region.box()) <= SAME_FACE_IOU for f in kept):
                face = Tracked(region, score)
                result = self._mesh_on(frame_bgr, region)
                if result is not None:
                    self._place(face, result)
                    kept.append(face)
        self._tracked = self._dedup(kept)
        faces = [(f.landmarks, f.bbox) for f in self._tracked]
        return faces, [(f.bbox, f.score) for f in self._tracked]

    @staticmethod
    def _place(face: Tracked, result: tuple[np.ndarray, Region]) -> None:
        face.landmarks, face.region = result
        xy = face.landmarks[:, :2]
        face.bbox = (float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max()))

    def _moved(self, before, landmarks) -> bool:
        size = max(before[2] - before[0], before[3] - before[1], 1.0)
        cx, cy = (before[0] + before[2]) / 2, (before[1] + before[3]) / 2
        nx = (landmarks[:, 0].min() + landmarks[:, 0].max()) / 2
        ny = (landmarks[:, 1].min() + landmarks[:, 1].max()) / 2
        return math.hypot(nx - cx, ny - cy) > self.move_margin * size

    @staticmethod
    def _match(region: Region, found):
        """The detection (region, box, score) that is the face in `region`, if one is."""
        best = max(found, key=lambda f: _iou(region.box(), f[0].box()), default=None)
        return best if best is not None and _iou(region.box(), best[0].box()) > SAME_FACE_IOU else None

    def _merge(self, found) -> None:
        """Detections in: refresh the score of the tracked faces they overlap, track the others while there is
        room."""
        for region, _box, score in found:
            same = [f for f in self._tracked if _iou(f.region.box(), region.box()) > SAME_FACE_IOU]
            if same:
                same[0].score = score
            elif len(self._tracked) < self.max_faces:
                self._tracked.append(Tracked(region, score))

    @staticmethod
    def _dedup(faces: list[Tracked]) -> list[Tracked]:
        kept: list[Tracked] = []
        for f in faces:
            if all(_iou(f.region.box(), k.region.box()) <= SAME_FACE_IOU for k in kept):
                kept.append(f)
        return kept
