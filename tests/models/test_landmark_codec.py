"""The landmark codec: a face's motion in a few bytes a frame, given back within its quantisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from avcall.pipelines.face.lip_model import LipModel, shape_measures
from avcall.pipelines.face.codec import ROLL_STEP, LandmarkDecoder, LandmarkEncoder
from scipy.ndimage import gaussian_filter1d


def speaking_lips(seconds: float, fps: float = 25.0, seed: int = 0) -> np.ndarray:
    """A speaker's own rest mouth moved along the lip model's modes, smoothly, over their real spread."""
    model = LipModel.load()
    rng = np.random.default_rng(seed)
    n = round(seconds * fps)
    rest = model.mean + np.tensordot(rng.normal(0, 1, model.identity_std.shape) * model.identity_std,
                                     model.identity_modes, axes=1)
    coeffs = gaussian_filter1d(rng.normal(0, 1, (n, model.k)), 2.0, axis=0)
    coeffs = coeffs / coeffs.std(axis=0) * model.mode_std
    return rest[None] + np.tensordot(coeffs, model.modes, axes=1)


def test_round_trip_is_faithful_and_under_8_kbit_s():
    lips = speaking_lips(20.0)
    encoder, decoder = LandmarkEncoder(), LandmarkDecoder()
    packets = [encoder.encode(i / 25, shape, eye_closure=(i % 50) / 49, roll=math.radians(i % 7 - 3))
               for i, shape in enumerate(lips)]
    faces = [decoder.decode(p) for p in packets]
    shapes = np.stack([f.shape for f in faces])
    # within the int8 step of the modes: a few thousandths of the inter-ocular distance
    assert np.abs(shapes - lips).max() < 0.01
    assert np.corrcoef(shape_measures(shapes)[0], shape_measures(lips)[0])[0, 1] > 0.99
    assert all(abs(f.eye_closure - (i % 50) / 49) <= 1 / 255 for i, f in enumerate(faces))
    assert all(abs(f.roll - math.radians(i % 7 - 3)) <= ROLL_STEP / 2 + 1e-9 for i, f in enumerate(faces))
    kbps = sum(map(len, packets)) * 8 * 25 / len(packets) / 1000
    assert kbps < 8, kbps
    sizes = [len(p) for p in packets]
    assert sizes[0] > 160 and sizes[1] <= 10  # the rest mouth once, then the motion alone
    assert sum(s > 160 for s in sizes) == 4  # a key packet every 5 s


def test_a_lost_face_is_one_byte_and_its_return_a_key_packet():
    lips = speaking_lips(2.0, seed=1)
    encoder, decoder = LandmarkEncoder(), LandmarkDecoder()
    sizes, present = [], []
    for i, shape in enumerate(lips):
        packet = encoder.encode(i / 25, None if 20 <= i < 30 else shape)
        sizes.append(len(packet))
        present.append(decoder.decode(packet).present)
    assert sizes[20:30] == [1] * 10 and not any(present[20:30]) and all(present[:20] + present[30:])
    assert sizes[30] > 160  # the face is back: its rest mouth first


def test_the_motion_is_the_departure_from_the_speakers_rest():
    lips = speaking_lips(10.0, seed=2)
    encoder, decoder = LandmarkEncoder(), LandmarkDecoder()
    faces = [decoder.decode(encoder.encode(i / 25, s)) for i, s in enumerate(lips)]
    motion = np.stack([f.motion for f in faces[125:]])
    assert np.abs(motion.mean(axis=0)).max() < 0.02  # the rest is the speaker's own, not the model's mean
    rests = np.stack([f.shape - f.motion for f in faces[125:250]])  # one rest between key packets
    assert np.allclose(rests, rests[0], atol=1e-6)


def test_malformed_packets_are_refused():
    decoder = LandmarkDecoder()
    with pytest.raises(ValueError, match="empty"):
        decoder.decode(b"")
    with pytest.raises(ValueError, match="expected"):
        decoder.decode(bytes([1, 0, 0]))
