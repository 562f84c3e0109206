"""The landmark codec: a tracked face's motion as a few bytes a frame, instead of a video stream.

What a frame carries (`--avatar reenact`: the camera's face drives the portrait):
- the mouth as the lip model's motion modes (the 6 principal ways real lips move; coefficients over the
  speaker's own rest mouth, int8 at 4 standard deviations of each mode over 127 steps),
- how closed the eyes are (uint8) and the head's roll (int8, half-degree steps).
The speaker's rest mouth (the running mean of their tracked lips, in the tracker's normalised lip space)
goes in a key packet at the start, when the face comes back and every KEY_INTERVAL_S: 80 int16 at
1/2000 of the inter-ocular distance. One flags byte leads every packet; a frame without a face is that
byte alone. At 25-30 fps that is about 2 kbit/s (`avcall bench avatar` measures it beside VP8).

The decoder gives back the lip shape (rest + motion) as `lip_features` measures it, and the motion alone,
which drives the portrait: a photo takes the speaker's motion, not the shape of their mouth.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from ..frames import FaceObservation
from .mesh import IRIS_A, IRIS_B, lip_features
from .lip_model import LipModel

PRESENT, KEY = 1, 2
KEY_INTERVAL_S = 5.0
REST_STEP = 1 / 2000  # inter-ocular units
ROLL_STEP = math.radians(0.5)
REST_TAU_S = 3.0  # the running mean's time constant
# Eye lids (mesh indices), corner to corner, upper and lower: the gap over the eye's width says how open it is.
_EYE_LIDS = (([159, 158, 160], [145, 153, 144], 33, 133), ([386, 385, 387], [374, 380, 373], 362, 263))


@dataclass(frozen=True)
class FaceMotion:
    """One decoded frame. `shape` (40, 2) is the speaker's lips as lip_features measures them; `motion`
    (40, 2) their departure from the speaker's rest mouth (add it to any rest mouth to replay it)."""

    present: bool
    shape: np.ndarray
    motion: np.ndarray
    eye_closure: float = 0.0  # 0 open, 1 closed
    roll: float = 0.0  # radians, the eye line against the horizontal


class _Basis:
    def __init__(self, model: LipModel | None = None) -> None:
        model = model or LipModel.load()
        self.modes = model.modes.reshape(model.k, -1).astype(np.float64)  # (K, 80)
        self.project = np.linalg.pinv(self.modes.T)  # (K, 80): least squares onto the modes
        self.step = 4 * model.mode_std / 127
        self.rest = model.mean.astype(np.float64)  # until the first key packet


def eye_openness(landmarks: np.ndarray) -> float:
    """The lid gap over the eye's width, both eyes averaged (about 0.25-0.35 open, under 0.1 closed)."""
    xy = landmarks[:, :2].astype(np.float64)
    ratios = []
    for upper, lower, a, b in _EYE_LIDS:
        gap = np.linalg.norm(xy[upper] - xy[lower], axis=1).mean()
        ratios.append(gap / max(float(np.linalg.norm(xy[b] - xy[a])), 1e-6))
    return float(np.mean(ratios))


class LandmarkEncoder:
    def __init__(self, model: LipModel | None = None) -> None:
        self._basis = _Basis(model)
        self._rest: np.ndarray | None = None  # the running mean of the speaker's lips
        self._sent_rest: np.ndarray | None = None  # the rest the decoder holds
        self._key_at = -math.inf
        self._last_pts: float | None = None
        self._open = 0.0  # the speaker's open-eye ratio, learnt as they go

    def encode_observation(self, obs: FaceObservation) -> bytes:
        """A tracked face (or its absence) -> one packet."""
        lips = lip_features(obs)
        if not lips.present:
            return self.encode(obs.pts, None)
        openness = eye_openness(obs.landmarks)
        self._open = openness if openness > self._open else 0.995 * self._open + 0.005 * openness
        closure = float(np.clip((self._open - openness) / (0.7 * max(self._open, 1e-6)), 0, 1))
        eye = obs.landmarks[IRIS_B, :2] - obs.landmarks[IRIS_A, :2]
        return self.encode(obs.pts, lips.shape, closure, math.atan2(float(eye[1]), float(eye[0])))

    def encode(self, pts: float, shape: np.ndarray | None, eye_closure: float = 0.0, roll: float = 0.0) -> bytes:
        """The lips (40, 2) of one frame at `pts` seconds, None for no face -> one packet."""
        if shape is None:
            self._key_at = -math.inf  # the next face starts with a key packet
            self._last_pts = pts
            return bytes([0])
        shape = np.asarray(shape, np.float64)
        dt = 0.04 if self._last_pts is None else min(max(pts - self._last_pts, 0.0), 1.0)
        self._last_pts = pts
        if self._rest is None:
            self._rest = shape.copy()
        else:
            self._rest += (shape - self._rest) * (1 - math.exp(-dt / REST_TAU_S))
        flags, key = PRESENT, b""
        if pts - self._key_at >= KEY_INTERVAL_S:
            rest = np.clip(np.round(self._rest / REST_STEP), -32767, 32767).astype("<i2")
            self._sent_rest, self._key_at = rest * REST_STEP, pts
            flags, key = flags | KEY, rest.tobytes()
        b = self._basis
        coeffs = b.project @ (shape - self._sent_rest).reshape(-1)
        q = np.clip(np.round(coeffs / b.step), -127, 127).astype(np.int8)
        closure = int(round(float(np.clip(eye_closure, 0, 1)) * 255))
        roll_q = int(np.clip(round(roll / ROLL_STEP), -127, 127))
        return bytes([flags]) + key + q.tobytes() + struct.pack("<Bb", closure, roll_q)


class LandmarkDecoder:
    def __init__(self, model: LipModel | None = None) -> None:
        self._basis = _Basis(model)
        self._rest = self._basis.rest.copy()

    def decode(self, packet: bytes) -> FaceMotion:
        if not packet:
            raise ValueError("an empty packet: every packet has its flags byte")
        flags, at = packet[0], 1
        b = self._basis
        if not flags & PRESENT:
            return FaceMotion(False, self._rest.astype(np.float32), np.zeros_like(self._rest, np.float32))
        if flags & KEY:
            self._rest = np.frombuffer(packet, "<i2", 80, at).reshape(40, 2) * REST_STEP
            at += 160
        k = len(b.step)
        if len(packet) != at + k + 2:
            raise ValueError(f"a packet of {len(packet)} bytes, {at + k + 2} expected")
        q = np.frombuffer(packet, np.int8, k, at).astype(np.float64)
        closure, roll_q = struct.unpack_from("<Bb", packet, at + k)
        motion = ((q * b.step) @ b.modes).reshape(40, 2)
        return FaceMotion(True, (self._rest + motion).astype(np.float32), motion.astype(np.float32),
                          closure / 255, roll_q * ROLL_STEP)
