"""The corpus maker's renderer: one still portrait animated along a lip track, written as an mp4 with the voice.

The lip track is in the tracker's normalised lip space (see `avcall.pipelines.stages.lip_features`): 40 lip
points of the face mesh, centred on the mouth, in inter-ocular (IOD) units, unrolled by the eye line. The
renderer finds the portrait's face mesh once, and for every frame
- places the target shape at the portrait's mouth (its centre, IOD and roll; the upper lip stays nearly put,
  the difference goes to the lower lip and the jaw),
- carries the lower lip's displacement to the chin and the jaw line, fading with distance; the upper face and
  the crop's border stay fixed,
- warps the lower face by a piecewise-affine warp over a Delaunay triangulation of the control points
  (inverse mapping, cv2.remap, on the lower-face box only),
- paints the inner mouth where the lips part: a dark red interior (no black hole), the upper row of teeth
  under the upper lip, the lower row above the lower lip once the lips part well, the tongue's pink behind
  it, soft edges,
- adds blinks (every 2-6 s, ~170 ms: the upper lids warped onto the lower lids) and a slow, small head
  motion (similarity transform: +-2 px, +-1.5 deg, +-1.5 % at 256 px), all deterministic for a seed.

`render_video` writes h264 (yuv420p, one thread, no creation time) and 16 kHz mono AAC to a temporary file
beside the target and renames it at the end: identical inputs give identical bytes.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from scipy.spatial import Delaunay

from ..errors import InputError
from ..frames import SAMPLE_RATE, VideoFrame
from ..stages.face_tracker import FaceTracker
from .mesh import INNER_LOWER, INNER_UPPER, IRIS_A, IRIS_B, LIP_INDICES, OUTER_LOWER, OUTER_UPPER
from .lip_track import LipTrack
from .lip_model import CORNER_L, CORNER_R, shape_measures

# Positions in the 40-point lip array (LIP_INDICES order).
_POS = {int(m): i for i, m in enumerate(LIP_INDICES)}
LEFT_CORNER_I, RIGHT_CORNER_I = CORNER_L, CORNER_R
_OUTER_UPPER_I = np.array([_POS[m] for m in OUTER_UPPER])
_OUTER_LOWER_I = np.array([_POS[m] for m in OUTER_LOWER])
_INNER_UPPER_I = np.array([_POS[m] for m in INNER_UPPER])
_INNER_LOWER_I = np.array([_POS[m] for m in INNER_LOWER])
_UPPER_I = np.concatenate([_OUTER_UPPER_I[1:-1], _INNER_UPPER_I])  # upper lip without the outer corners
# The inner contour as a closed loop: inner corners 78 ... 308 along the upper lip, back along the lower lip.
_INNER_LOOP_I = np.concatenate([_INNER_UPPER_I, _INNER_LOWER_I[::-1]])
# The inner lower lip with the inner corners, left to right (for interpolating its curve).
_INNER_LOWER_FULL_I = np.concatenate([[_INNER_UPPER_I[0]], _INNER_LOWER_I, [_INNER_UPPER_I[-1]]])

# Eye lids, corner to corner (image left to right), upper and lower, same length.
_EYES = (
    ([33, 246, 161, 160, 159, 158, 157, 173, 133], [33, 7, 163, 144, 145, 153, 154, 155, 133]),
    ([362, 398, 384, 385, 386, 387, 388, 466, 263], [362, 382, 381, 380, 374, 373, 390, 249, 263]),
)
_IRIS = list(range(468, 478))

FACE_SHARE = 0.6  # the face mesh's width over the frame's width
UPPER_LIP_KEEP = 0.7  # share of the upper lip's mean displacement taken back (the jaw moves, the maxilla not)
BLINK_CLOSE, BLINK_HOLD, BLINK_OPEN = 0.05, 0.04, 0.08  # seconds
BLINK_GAP = (2.0, 6.0)


def default_portrait() -> np.ndarray:
    """scikit-image's astronaut (Eileen Collins), BGR uint8."""
    from skimage.data import astronaut

    return np.ascontiguousarray(astronaut()[:, :, ::-1])


def _as_bgr(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise InputError(f"portrait: expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise InputError(f"portrait: expected an image (H, W, 3), got shape {image.shape}")


def find_face(image_bgr: np.ndarray) -> np.ndarray:
    """The face mesh (478, 3) of the largest face in a still image, or InputError if there is none."""
    tracker = FaceTracker()
    tracker.open()  # blocking use on this thread, as the benchmark does
    try:
        obs = tracker.observe(VideoFrame(pts=0.0, image=image_bgr))
    finally:
        tracker.close()
    if not obs.present or obs.landmarks is None:
        raise InputError("no face found in the portrait")
    xy = obs.landmarks[:, :2]
    if np.hypot(*(xy[IRIS_B] - xy[IRIS_A])) < 4.0:
        raise InputError("no face found in the portrait (the face is too small)")
    return obs.landmarks.astype(np.float64)


def load_portrait(path: str | Path) -> np.ndarray:
    """A portrait image (BGR uint8) from a file; InputError if it cannot be read or shows no face."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: not an image file OpenCV can read")
    try:
        find_face(image)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    return image


def _rot(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _smoothstep(x: np.ndarray, a: float, b: float) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class _PiecewiseAffine:
    """Inverse piecewise-affine warp over fixed triangles, evaluated on one box of the output."""

    def __init__(self, src: np.ndarray, triangles: np.ndarray, box: tuple[int, int, int, int]) -> None:
        self.src = src.astype(np.float64)
        self.tri = triangles.astype(np.int64)
        self.box = box  # x0, y0, x1, y1 (exclusive)
        x0, y0, x1, y1 = box
        self.gx, self.gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        self.ids = np.empty((y1 - y0, x1 - x0), np.int32)

    def apply(self, out: np.ndarray, source: np.ndarray, dst: np.ndarray) -> None:
        """Writes the warp of `source` that takes the control points to `dst` into `out`'s box."""
        x0, y0, x1, y1 = self.box
        moved = np.any(np.abs(dst - self.src) > 1e-3, axis=1)
        active = np.nonzero(moved[self.tri].any(axis=1))[0]
        if len(active) == 0:
            return
        tri = self.tri[active]
        d, s = dst[tri], self.src[tri]  # (K, 3, 2)
        e1, e2 = d[:, 1] - d[:, 0], d[:, 2] - d[:, 0]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        ok = np.abs(det) > 1e-6
        tri, d, s, det, e1, e2 = tri[ok], d[ok], s[ok], det[ok], e1[ok], e2[ok]
        # Barycentric (b1, b2) of a point p: [b1 b2] = inv([e1 e2]) (p - d0); src = s0 + b1 (s1-s0) + b2 (s2-s0).
        inv = np.stack([np.stack([e2[:, 1], -e2[:, 0]], 1), np.stack([-e1[:, 1], e1[:, 0]], 1)], 1) / det[:, None, None]
        f1, f2 = s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]
        lin = f1[:, :, None] * inv[:, None, 0, :] + f2[:, :, None] * inv[:, None, 1, :]  # (K, 2, 2)
        off = s[:, 0] - np.einsum("kij,kj->ki", lin, d[:, 0])
        ids = self.ids
        ids.fill(-1)
        pts = np.round((d - (x0, y0)) * 16).astype(np.int32)
        for k in range(len(tri)):
            cv2.fillConvexPoly(ids, pts[k], k, lineType=cv2.LINE_8, shift=4)
        sel = ids >= 0
        k = ids[sel]
        gx, gy = self.gx[sel], self.gy[sel]
        lin32, off32 = lin.astype(np.float32), off.astype(np.float32)
        mapx, mapy = self.gx.copy(), self.gy.copy()
        mapx[sel] = lin32[k, 0, 0] * gx + lin32[k, 0, 1] * gy + off32[k, 0]
        mapy[sel] = lin32[k, 1, 0] * gx + lin32[k, 1, 1] * gy + off32[k, 1]
        out[y0:y1, x0:x1] = cv2.remap(source, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class PortraitRenderer:
    """Animates one portrait: `render(lips, t)` gives the BGR frame (size x size) for a normalised lip shape.

    The mouth's paint was chosen on what the tracker reads back (eval talking-face's round trip): a lighter
    interior and an opaque lower row read as a smaller opening (reenact r 0.85 against 0.96 on four clips),
    so the interior stays a deep red and the lower teeth and tongue half-shown."""

    LOWER_TEETH = 0.45  # how opaque the lower row of teeth is, fully shown
    TONGUE = 0.3  # how much of the tongue's pink shows through the interior
    INTERIOR_DEEP, INTERIOR_WARM = (22, 22, 48), (45, 50, 110)  # BGR: the mouth's depth, and near the lips

    def __init__(self, portrait_bgr: np.ndarray | None = None, size: int = 256, seed: int = 0) -> None:
        image = _as_bgr(default_portrait() if portrait_bgr is None else portrait_bgr)
        landmarks = find_face(image)
        self.size = int(size)
        self.seed = int(seed)
        self.pad = math.ceil(0.05 * self.size)
        canvas_side = self.size + 2 * self.pad

        # The crop: a square around the face mesh, the mesh ~FACE_SHARE of its width.
        xy = landmarks[:, :2]
        lo, hi = xy[:468].min(axis=0), xy[:468].max(axis=0)
        centre = (lo + hi) / 2
        scale = self.size * FACE_SHARE / (hi[0] - lo[0])  # portrait pixels -> output pixels
        src = image
        if scale < 1.0:  # shrink with area averaging first, then place with a sub-pixel affine
            src = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            sx, sy = src.shape[1] / image.shape[1], src.shape[0] / image.shape[0]
            xy = xy * (sx, sy)
            centre = centre * (sx, sy)
            scale = scale / sx
        m = np.array([[scale, 0, canvas_side / 2 - scale * centre[0]],
                      [0, scale, canvas_side / 2 - scale * centre[1]]])
        self.base = cv2.warpAffine(src, m, (canvas_side, canvas_side),
                                   flags=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
        self.mesh = xy @ m[:, :2].T + m[:, 2]  # (478, 2) in canvas pixels

        # The portrait's own lip space.
        eye = self.mesh[IRIS_B] - self.mesh[IRIS_A]
        self.iod = float(np.hypot(*eye))
        self.roll = float(math.atan2(eye[1], eye[0]))
        self.R = _rot(self.roll)  # face coords -> canvas pixel directions
        lips = self.mesh[LIP_INDICES]
        self.mouth = lips.mean(axis=0)
        # Face coordinates: origin the mouth centre, IOD units, unrolled (v grows downwards).
        self.face = (self.mesh - self.mouth) @ self.R / self.iod
        self.neutral_shape = self.face[LIP_INDICES].astype(np.float32)  # == lip_features' shape
        self.neutral_opening, self.neutral_width = (float(v) for v in shape_measures(self.neutral_shape))
        self._skin = self._skin_colour()
        self._setup_lower_face()
        self._setup_eyes()
        self._setup_motion()

    # ----------------------------------------------------------------------------------------------- set-up

    def _to_px(self, q: np.ndarray) -> np.ndarray:
        return self.mouth + (q @ self.R.T) * self.iod

    def _skin_colour(self) -> np.ndarray:
        samples = []
        for idx in (50, 280, 200, 18):  # cheeks under the eyes, chin, below the lower lip
            x, y = np.round(self.mesh[idx]).astype(int)
            r = max(2, int(0.05 * self.iod))
            patch = self.base[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].reshape(-1, 3)
            if len(patch):
                samples.append(patch)
        return np.median(np.concatenate(samples), axis=0).astype(np.float32)

    def _ring(self, u0: float, u1: float, v0: float, v1: float, step: float) -> np.ndarray:
        """Points on the rectangle [u0,u1]x[v0,v1] in face coords, every ~step."""
        nu, nv = max(2, math.ceil((u1 - u0) / step)), max(2, math.ceil((v1 - v0) / step))
        us, vs = np.linspace(u0, u1, nu + 1), np.linspace(v0, v1, nv + 1)
        return np.concatenate([np.stack([us, np.full_like(us, v0)], 1), np.stack([us, np.full_like(us, v1)], 1),
                               np.stack([np.full_like(vs[1:-1], u0), vs[1:-1]], 1),
                               np.stack([np.full_like(vs[1:-1], u1), vs[1:-1]], 1)])

    def _box(self, ring_px: np.ndarray) -> tuple[int, int, int, int]:
        side = self.base.shape[0]
        x0, y0 = np.floor(ring_px.min(axis=0)).astype(int)
        x1, y1 = np.ceil(ring_px.max(axis=0)).astype(int) + 1
        return max(0, x0), max(0, y0), min(side, x1), min(side, y1)

    def _clip_ring(self, ring_px: np.ndarray) -> np.ndarray:
        side = self.base.shape[0]
        return np.clip(ring_px, 0, side - 1)

    def _setup_lower_face(self) -> None:
        face = self.face
        chin_v = float(face[152, 1])
        self._chin_v = chin_v
        u0, u1, v0, v1 = -1.7, 1.7, -0.62, chin_v + 0.75
        ring = self._ring(u0, u1, v0, v1, 0.25)
        lip_set = set(LIP_INDICES.tolist())
        inside = [i for i in range(468) if i not in lip_set
                  and u0 + 0.08 < face[i, 0] < u1 - 0.08 and v0 + 0.08 < face[i, 1] < v1 - 0.08]
        self._lf_mesh = np.array(inside)
        q = face[self._lf_mesh]  # face coords of the moving (non-lip) mesh points
        # Jaw weight: below the corner line, strongest under the mouth, fading sideways and below the chin.
        u, v = q[:, 0], q[:, 1]
        below_chin = np.where(v > chin_v, np.exp(-((v - chin_v) / 0.35) ** 2), 1.0)
        lower_v = float(self.neutral_shape[_OUTER_LOWER_I, 1].max())
        self._jaw_w = np.exp(-(u / 0.75) ** 2) * _smoothstep(v, 0.0, lower_v) * below_chin
        # Near the lips, the skin follows the nearest lip points (Shepard weights), fading with distance.
        lips = self.neutral_shape.astype(np.float64)
        dist = np.hypot(*(q[:, None, :] - lips[None, :, :]).transpose(2, 0, 1))
        w = 1.0 / (dist ** 2 + 0.03 ** 2) ** 1.5
        self._shepard = w / w.sum(axis=1, keepdims=True)
        reach = np.where(v < 0, 0.18, 0.3)
        self._near_w = np.exp(-(dist.min(axis=1) / reach) ** 2) * (1 - self._jaw_w)
        ring_px = self._clip_ring(self._to_px(ring))
        self._lf_ring = ring_px
        # Triangulate with the mouth held open, so that no triangle spans a lip from outside to inside.
        src_px = np.concatenate([self.mesh[LIP_INDICES], self.mesh[self._lf_mesh], ring_px])
        opened = self._lower_face_points(self._opened_shape(0.2))
        tri = Delaunay(opened).simplices
        self._lf_warp = _PiecewiseAffine(src_px, tri, self._box(ring_px))

    def _opened_shape(self, opening: float) -> np.ndarray:
        """The neutral shape with the inner lower lip lowered until the inner gap is at least `opening`."""
        shape = self.neutral_shape.astype(np.float64).copy()
        extra = max(0.0, opening - self.neutral_opening)
        lower = np.concatenate([_INNER_LOWER_I, _OUTER_LOWER_I])
        span = max(1e-6, shape[RIGHT_CORNER_I, 0] - shape[LEFT_CORNER_I, 0]) / 2
        mid = (shape[RIGHT_CORNER_I, 0] + shape[LEFT_CORNER_I, 0]) / 2
        prof = np.clip(1 - ((shape[lower, 0] - mid) / span) ** 2, 0, 1) ** 0.5
        shape[lower, 1] += extra * prof
        return shape - shape.mean(axis=0)

    def _lower_face_points(self, target: np.ndarray) -> np.ndarray:
        """Control points (lips, lower-face mesh, fixed ring) in canvas pixels for a target lip shape."""
        target = np.asarray(target, np.float64)
        delta = target - self.neutral_shape
        delta = delta - UPPER_LIP_KEEP * delta[_UPPER_I].mean(axis=0)  # the upper lip nearly stays put
        d_low = delta[_OUTER_LOWER_I].mean(axis=0)
        d_skin = self._jaw_w[:, None] * d_low + self._near_w[:, None] * (self._shepard @ delta)
        lips_px = self.mesh[LIP_INDICES] + (delta @ self.R.T) * self.iod
        skin_px = self.mesh[self._lf_mesh] + (d_skin @ self.R.T) * self.iod
        return np.concatenate([lips_px, skin_px, self._lf_ring])

    def _setup_eyes(self) -> None:
        self._eye_warps = []
        face = self.face
        for upper, lower in _EYES:
            lid = face[upper + lower]
            cu, cv_ = lid.mean(axis=0)
            half_w = (lid[:, 0].max() - lid[:, 0].min()) / 2
            u0, u1, v0, v1 = cu - half_w - 0.2, cu + half_w + 0.2, cv_ - 0.38, cv_ + 0.25
            ring = self._ring(u0, u1, v0, v1, 0.12)
            lid_set = set(upper + lower) | set(_IRIS)
            near = [i for i in range(468) if i not in lid_set
                    and u0 + 0.04 < face[i, 0] < u1 - 0.04 and v0 + 0.04 < face[i, 1] < v1 - 0.04]
            lid_ids = list(dict.fromkeys(upper + lower))  # the corners are on both lids
            ids = np.array(lid_ids + near)
            ring_px = self._clip_ring(self._to_px(ring))
            src_px = np.concatenate([self.mesh[ids], ring_px])
            tri = Delaunay(src_px).simplices
            # Closed: the upper lid lies 80 % of the way down to the lower lid, which rises the other 20 %.
            up, lo = face[upper], face[lower]
            gap = lo[:, 1] - up[:, 1]
            shift = np.zeros((len(ids), 2))
            for k in range(1, len(upper) - 1):
                shift[lid_ids.index(upper[k]), 1] = 0.8 * gap[k]
                shift[lid_ids.index(lower[k]), 1] = -0.2 * gap[k]
            # Skin above the upper lid comes down with it, fading upwards.
            for j, m in enumerate(near, start=len(lid_ids)):
                u, v = face[m]
                lid_v = np.interp(u, up[:, 0], up[:, 1])
                if v < lid_v and up[0, 0] < u < up[-1, 0]:
                    shift[j, 1] = 0.8 * np.interp(u, up[:, 0], gap) * math.exp(-((lid_v - v) / 0.12) ** 2)
            shift_px = np.concatenate([(shift @ self.R.T) * self.iod, np.zeros_like(ring_px)])
            self._eye_warps.append((_PiecewiseAffine(src_px, tri, self._box(ring_px)), src_px + 0, shift_px))

    def _setup_motion(self) -> None:
        rng = np.random.default_rng([self.seed, 0xFACE])
        # Head motion: per parameter (tx, ty, roll, scale) three slow sinusoids, normalised to |x| <= 1.
        self._motion_f = rng.uniform(0.05, 0.35, (4, 3))
        self._motion_p = rng.uniform(0, 2 * np.pi, (4, 3))
        self._motion_a = rng.uniform(0.5, 1.0, (4, 3))
        self._motion_a /= self._motion_a.sum(axis=1, keepdims=True)
        self._blink_rng = rng
        self._blinks: list[float] = []
        self._blink_end = 0.0

    # ----------------------------------------------------------------------------------------------- per frame

    def blink_closure(self, t: float) -> float:
        """How closed the eyes are at time t (0 open, 1 closed)."""
        while self._blink_end <= t + 1.0:
            start = self._blink_end + self._blink_rng.uniform(*BLINK_GAP) if self._blinks else \
                self._blink_rng.uniform(0.8, 3.0)
            self._blinks.append(start)
            self._blink_end = start
        total = BLINK_CLOSE + BLINK_HOLD + BLINK_OPEN
        i = int(np.searchsorted(self._blinks, t, side="right")) - 1
        if i < 0 or t - self._blinks[i] >= total:
            return 0.0
        dt = t - self._blinks[i]
        if dt < BLINK_CLOSE:
            x = dt / BLINK_CLOSE
        elif dt < BLINK_CLOSE + BLINK_HOLD:
            x = 1.0
        else:
            x = 1.0 - (dt - BLINK_CLOSE - BLINK_HOLD) / BLINK_OPEN
        return float(x * x * (3 - 2 * x))

    def head_motion(self, t: float, roll: float | None = None) -> np.ndarray:
        """The 2x3 affine from the canvas to the output frame at time t; `roll` (radians) in place of the
        idle one (a driving face's own)."""
        s = (self._motion_a * np.sin(2 * np.pi * self._motion_f * t + self._motion_p)).sum(axis=1)
        k = self.size / 256
        tx, ty = 2.0 * k * s[0], 2.0 * k * s[1]
        roll, scale = math.radians(1.5) * s[2] if roll is None else roll, 1.0 + 0.015 * s[3]
        c = self.base.shape[0] / 2
        pivot = self.mesh[[IRIS_A, IRIS_B, 152]].mean(axis=0)  # about the middle of the face
        a = scale * _rot(roll)
        out_pivot = pivot - (c - self.size / 2)
        return np.concatenate([a, (out_pivot + (tx, ty) - a @ pivot)[:, None]], axis=1)

    def lip_pixels(self, lips: np.ndarray) -> np.ndarray:
        """The 40 lip points (canvas pixels) the frame puts the lips at."""
        return self._lower_face_points(lips)[:40]

    def render(self, lips: np.ndarray, t: float, eye_closure: float | None = None,
               roll: float | None = None) -> np.ndarray:
        """The frame at time t with these lips; the blinks and the head's roll are the renderer's own unless
        given (a driving face's, `--avatar reenact`)."""
        lips = np.asarray(lips, np.float64).reshape(40, 2)
        if not np.all(np.isfinite(lips)):
            lips = self.neutral_shape.astype(np.float64)
        canvas = self.base.copy()
        points = self._lower_face_points(lips)
        self._lf_warp.apply(canvas, self.base, points)
        self._paint_mouth(canvas, points[:40])
        closure = self.blink_closure(t) if eye_closure is None else eye_closure
        if closure > 0.02:
            source = canvas.copy()
            for warp, src_px, shift_px in self._eye_warps:
                warp.apply(canvas, source, src_px + closure * shift_px)
        return cv2.warpAffine(canvas, self.head_motion(t, roll), (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    def _paint_mouth(self, canvas: np.ndarray, lips_px: np.ndarray) -> None:
        """Dark mouth interior and teeth inside the inner lip contour, where the lips part."""
        loop = lips_px[_INNER_LOOP_I]
        side = canvas.shape[0]
        m = 3
        x0, y0 = np.maximum(np.floor(loop.min(axis=0)).astype(int) - m, 0)
        x1, y1 = np.minimum(np.ceil(loop.max(axis=0)).astype(int) + m + 1, side)
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [np.round((loop - (x0, y0)) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        if not mask.any():
            return
        blur = max(0.5, 0.012 * self.iod)
        alpha = cv2.GaussianBlur(mask, (0, 0), blur).astype(np.float32) / 255.0

        # Work in face coords (unrolled): distance below the upper inner lip, above the lower inner lip.
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        rel = np.stack([gx - self.mouth[0], gy - self.mouth[1]], -1) @ self.R.astype(np.float32) / self.iod
        u, v = rel[..., 0], rel[..., 1]
        q = (lips_px - self.mouth) @ self.R / self.iod
        up, low = q[_INNER_UPPER_I], q[_INNER_LOWER_FULL_I]
        up_v = np.interp(u, up[:, 0], up[:, 1])
        low_v = np.interp(u, low[:, 0], low[:, 1])
        below_up = v - up_v
        above_low = low_v - v
        left, right = q[_INNER_UPPER_I[0], 0], q[_INNER_UPPER_I[-1], 0]
        half = max(1e-3, (right - left) / 2)
        across = np.clip(np.abs(u - (left + right) / 2) / half, 0, 1)  # 0 centre, 1 corners
        gap = np.maximum(low_v - up_v, 1e-3)

        skin = self._skin
        lum = float(skin.mean())
        bright = np.clip(lum / 150.0, 0.55, 1.0)
        # Interior: a deep red mouth (not black), deepest in the middle of a wide opening, warmer
        # near the lips and the cheeks.
        deep = np.array(self.INTERIOR_DEEP, np.float32)
        warm = np.array(self.INTERIOR_WARM, np.float32)
        depth = np.clip(np.minimum(below_up, above_low) / 0.08, 0, 1) * (0.4 + 0.6 * np.clip(gap / 0.25, 0, 1))
        interior = warm + (deep - warm) * depth[..., None]
        # Tongue: a pink mass resting behind the lower teeth, its top a soft arch, lit from the front.
        tongue_top = 0.03 + 0.45 * gap * (1 - 0.5 * across ** 2)
        tongue = (1 - _smoothstep(above_low, tongue_top - 0.02, tongue_top + 0.01)) * _smoothstep(gap, 0.05, 0.14)
        tongue_colour = np.array([96, 104, 186], np.float32) * bright
        lit = 0.8 + 0.2 * np.clip(1 - above_low / np.maximum(tongue_top, 1e-3), 0, 1)
        interior = interior + (tongue_colour * lit[..., None] - interior) * (self.TONGUE * tongue * (1 - across ** 3))[..., None]
        teeth = np.array([212, 228, 240], np.float32) * bright
        gaps = 0.5 + 0.5 * np.cos(2 * np.pi * (u - (left + right) / 2) / 0.075)  # the lines between teeth
        # Upper teeth: an off-white row under the upper lip, shaded towards the corners and downwards.
        teeth_h = 0.09
        t_up = _smoothstep(below_up, -0.01, 0.012) * (1 - _smoothstep(below_up, teeth_h - 0.015, teeth_h))
        t_up = t_up * (1 - _smoothstep(across, 0.55, 0.95))
        shade = (1 - 0.2 * np.clip(below_up / teeth_h, 0, 1) - 0.3 * across ** 2) * (1 - 0.07 * gaps ** 8)
        # Lower teeth: a row above the lower lip, moving with the jaw, shown once the lips part well.
        low_h = 0.055
        t_low = _smoothstep(above_low, -0.008, 0.01) * (1 - _smoothstep(above_low, low_h - 0.012, low_h))
        t_low = t_low * (1 - _smoothstep(across, 0.45, 0.85)) * self.LOWER_TEETH * _smoothstep(gap, 0.05, 0.13)
        low_shade = (0.82 - 0.25 * across ** 2 - 0.1 * np.clip(above_low / low_h, 0, 1)) * (1 - 0.08 * gaps ** 8)
        colour = interior + (teeth * shade[..., None] - interior) * t_up[..., None]
        colour = colour + (teeth * low_shade[..., None] - colour) * (t_low * (1 - t_up))[..., None]
        # A thin shadow right under the upper lip and at the corners.
        edge = np.exp(-(below_up / 0.01) ** 2) * 0.35 + 0.5 * across ** 4
        colour = colour * (1 - np.clip(edge, 0, 0.8))[..., None]
        roi = canvas[y0:y1, x0:x1].astype(np.float32)
        canvas[y0:y1, x0:x1] = np.clip(roi + (colour - roi) * alpha[..., None], 0, 255).astype(np.uint8)


def _fill_missing(track: LipTrack, neutral: np.ndarray) -> np.ndarray:
    """Lip shapes per frame; frames without a face take the shape interpolated from their neighbours."""
    lips = np.asarray(track.lips, np.float64).reshape(len(track), 40, 2)
    good = np.asarray(track.face_present, bool) & np.all(np.isfinite(lips), axis=(1, 2)) \
        & (np.abs(lips).sum(axis=(1, 2)) > 0)
    if not good.any():
        return np.repeat(neutral[None].astype(np.float64), len(track), axis=0)
    if good.all():
        return lips
    idx = np.arange(len(track))
    flat = lips.reshape(len(track), -1)
    filled = np.stack([np.interp(idx, idx[good], flat[good, j]) for j in range(flat.shape[1])], axis=1)
    return filled.reshape(len(track), 40, 2)


def render_video(path: str | Path, track: LipTrack, audio: np.ndarray | None, portrait: np.ndarray | None = None,
                 size: int = 256, seed: int = 0) -> None:
    """Renders the portrait along `track` (one frame per track frame) and writes an mp4 with `audio`
    (16 kHz mono float32, or None for a silent video). Byte-identical output for identical inputs."""
    if len(track) == 0:
        raise ValueError("render_video: the lip track holds no frames")
    renderer = PortraitRenderer(portrait, size=size, seed=seed)
    lips = _fill_missing(track, renderer.neutral_shape)
    images = (renderer.render(lips[i], i / float(track.fps)) for i in range(len(track)))
    write_mp4(path, images, (size, size), float(track.fps), audio)


def write_mp4(path: str | Path, images: Iterable[np.ndarray], size: tuple[int, int], fps: float,
              audio: np.ndarray | None) -> None:
    """BGR frames of `size` (width, height) at `fps` as h264 (yuv420p, one thread, no creation time) with
    `audio` (16 kHz mono float32, or None) as AAC, written to a temporary name and renamed when complete.
    Identical inputs give identical bytes."""
    import av

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with av.open(str(tmp), "w", format="mp4", container_options={"fflags": "+bitexact"}) as out:
            video = out.add_stream("libx264", rate=rate, options={"crf": "17", "preset": "medium",
                                                                  "threads": "1", "x264-params": "threads=1"})
            video.width, video.height = size
            video.pix_fmt = "yuv420p"
            video.codec_context.thread_count = 1
            video.codec_context.flags |= av.codec.context.Flags.bitexact
            astream = None
            samples = None
            if audio is not None:
                samples = np.clip(np.asarray(audio, np.float32).reshape(-1), -1.0, 1.0)
                astream = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
                astream.bit_rate = 48000
                astream.codec_context.flags |= av.codec.context.Flags.bitexact
            out.metadata.clear()
            block, sent = 1024, 0

            def send_audio(until: int) -> None:
                nonlocal sent
                while sent < min(until, len(samples)):
                    chunk = samples[sent:sent + block]
                    frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                    frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, sent, Fraction(1, SAMPLE_RATE)
                    out.mux(astream.encode(frame))
                    sent += len(chunk)

            for i, image in enumerate(images):
                frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                frame.pts, frame.time_base = i, 1 / rate
                out.mux(video.encode(frame))
                if astream is not None:
                    send_audio(round((i + 1) / fps * SAMPLE_RATE))
            out.mux(video.encode(None))
            if astream is not None:
                send_audio(len(samples))
                out.mux(astream.encode(None))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
