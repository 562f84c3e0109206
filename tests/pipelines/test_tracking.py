"""Face selection and lip-feature normalisation."""

from __future__ import annotations

import numpy as np

from avcall.pipelines.frames import FaceObservation
from avcall.pipelines.stages.face_tracker import FaceSelector
from avcall.pipelines.face.mesh import IRIS_A, IRIS_B, LIP_INDICES, lip_features


def test_selector_takes_the_largest_face_and_keeps_it():
    selector = FaceSelector(switch_ratio=1.3, switch_frames=5)
    small, big = (0, 0, 10, 10), (50, 50, 70, 70)
    assert selector.choose([small, big]) == 1
    # sizes that swap back and forth slightly do not make it switch
    similar = (0, 0, 21, 21)
    assert [selector.choose([similar, big]) for _ in range(10)] == [1] * 10
    # a face clearly larger for long enough takes over
    huge = (100, 100, 160, 160)
    picks = [selector.choose([big, huge]) for _ in range(6)]
    assert picks[:4] == [0] * 4 and picks[-1] == 1
    assert selector.choose([]) is None


def synthetic_face(rng) -> np.ndarray:
    landmarks = np.zeros((478, 3), np.float32)
    landmarks[:, :2] = rng.uniform(100, 200, (478, 2))
    landmarks[IRIS_A, :2] = (120, 100)
    landmarks[IRIS_B, :2] = (180, 100)
    return landmarks


def transform(landmarks, angle, scale, shift):
    c, s = np.cos(angle), np.sin(angle)
    out = landmarks.copy()
    out[:, :2] = landmarks[:, :2] @ np.array([[c, -s], [s, c]]).T * scale + shift
    return out


def test_lip_features_ignore_position_scale_and_roll():
    rng = np.random.default_rng(1)
    face = synthetic_face(rng)
    ref = lip_features(FaceObservation(pts=0, present=True, confidence=1, landmarks=face))
    moved = lip_features(FaceObservation(pts=0, present=True, confidence=1,
                                         landmarks=transform(face, 0.4, 2.5, (300, -40))))
    assert np.allclose(ref.shape, moved.shape, atol=1e-4)
    assert np.isclose(ref.opening, moved.opening) and np.isclose(ref.width, moved.width)
    assert np.allclose(ref.shape.mean(axis=0), 0, atol=1e-5)  # centred on the mouth
    assert len(set(LIP_INDICES.tolist())) == 40


def test_no_face_is_a_state_not_an_error():
    lips = lip_features(FaceObservation(pts=1.0, present=False, confidence=0.0))
    assert not lips.present and lips.confidence == 0 and lips.shape.shape == (40, 2) and lips.opening == 0
