"""The face mesh's landmarks that avcall reads, and the lip features made from them.

Lip features: the 40 lip points of the face mesh as a pose- and scale-normalised mouth shape.
Normalisation: translate to the mouth centre (the mean of the 40 points), divide by the inter-ocular
distance (iris centres), rotate by minus the roll of the eye line. Together with the mouth opening (inner
lip gap) and width (corner to corner), in inter-ocular units. Identity, distance to the camera and head
roll drop out; what is left is what the lips do.
"""

from __future__ import annotations

import numpy as np

from ..frames import FaceObservation, LipFeatures

# Mesh indices, each contour from the left mouth corner (image left) round to the right one.
OUTER_UPPER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
OUTER_LOWER = [146, 91, 181, 84, 17, 314, 405, 321, 375]
INNER_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
INNER_LOWER = [95, 88, 178, 87, 14, 317, 402, 318, 324]
LIP_INDICES = np.array(OUTER_UPPER + OUTER_LOWER + INNER_UPPER + INNER_LOWER)
OUTER_CONTOUR = OUTER_UPPER + OUTER_LOWER[::-1]  # a closed loop, for drawing
INNER_CONTOUR = INNER_UPPER + INNER_LOWER[::-1]
INNER_TOP, INNER_BOTTOM = 13, 14
LEFT_CORNER, RIGHT_CORNER = 61, 291
IRIS_A, IRIS_B = 468, 473  # iris centres (refined mesh)


def lip_features(obs: FaceObservation) -> LipFeatures:
    if not obs.present or obs.landmarks is None:
        return LipFeatures(pts=obs.pts, present=False, confidence=0.0)
    xy = obs.landmarks[:, :2].astype(np.float64)
    eye_line = xy[IRIS_B] - xy[IRIS_A]
    iod = float(np.hypot(*eye_line))
    if iod < 1e-6:
        return LipFeatures(pts=obs.pts, present=False, confidence=0.0)
    roll = np.arctan2(eye_line[1], eye_line[0])
    c, s = np.cos(-roll), np.sin(-roll)
    unroll = np.array([[c, -s], [s, c]])
    lips = xy[LIP_INDICES]
    shape = (lips - lips.mean(axis=0)) @ unroll.T / iod
    opening = float(np.hypot(*(xy[INNER_BOTTOM] - xy[INNER_TOP]))) / iod
    width = float(np.hypot(*(xy[RIGHT_CORNER] - xy[LEFT_CORNER]))) / iod
    return LipFeatures(pts=obs.pts, present=True, confidence=obs.confidence,
                       shape=shape.astype(np.float32), opening=opening, width=width)
