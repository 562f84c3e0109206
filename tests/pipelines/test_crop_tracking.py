"""The crop tracking path (issue 32, point 3; pipelines/face/crop_mesh.py): the mesh on a crop around the face with
the landmarks mapped back to the frame, the detector only when needed; the same faces as the whole-frame path."""

from __future__ import annotations

import numpy as np
import pytest

from avcall.pipelines.face.crop_mesh import REDETECT_EVERY, _normalised_landmarks
from avcall.pipelines.face.mesh import LIP_INDICES
from avcall.pipelines.frames import VideoFrame
from avcall.pipelines.stages.face_tracker import FaceTracker

CLIP, OTHER = "GRID_lbbc2a.mpg", "GRID_bbaf2n.mpg"


def test_landmarks_read_with_numpy_equal_protobuf():
    from mediapipe.framework.formats import landmark_pb2
    from mediapipe.python import packet_creator

    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 2, (478, 3)).astype(np.float32)
    points[7] = 0.0  # a zero is still written (proto2 fields that are set)
    msg = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in points:
        msg.landmark.add(x=x, y=y, z=z)
    assert np.array_equal(_normalised_landmarks(packet_creator.create_proto(msg)), points)
    msg.landmark[3].visibility = 0.5  # another layout: read through protobuf
    assert np.array_equal(_normalised_landmarks(packet_creator.create_proto(msg)), points)


@pytest.fixture(scope="module")
def clips(shared_data):
    import av

    def frames(name):
        with av.open(str(shared_data / "talking_faces" / name)) as c:
            return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]

    return frames(CLIP), frames(OTHER)


def track(images, tracking):
    tracker = FaceTracker(max_faces=2, tracking=tracking)
    tracker.open()
    mesh = tracker._mesh
    try:
        return [tracker.observe(VideoFrame(pts=i / 25, image=im, index=i)) for i, im in enumerate(images)], mesh
    finally:
        tracker.close()


def test_crop_path_gives_the_whole_frame_paths_landmarks(clips):
    images = clips[0][:40]
    full, _ = track(images, "full")
    crop, mesh = track(images, "crop")
    assert all(o.present for o in full) and all(o.present for o in crop)
    lip_px = [np.linalg.norm(a.landmarks[LIP_INDICES, :2] - b.landmarks[LIP_INDICES, :2], axis=1).mean()
              for a, b in zip(full, crop)]
    assert max(lip_px) < 0.25, lip_px  # the same mesh on the same pixels, a crop of them
    assert all(abs(a.confidence - b.confidence) < 0.05 for a, b in zip(full, crop))
    assert all(b.image_size == a.image_size and len(b.landmarks) == 478 for a, b in zip(full, crop))
    assert mesh.mesh.detections_run <= len(images) // REDETECT_EVERY + 1  # not every frame, as the whole-frame graph


def test_a_face_that_comes_into_view_is_picked_up_and_a_lost_one_found_again(clips):
    big, small = clips
    h, w = big[0].shape[:2]
    images = []
    for i in range(60):
        left = np.zeros_like(big[i]) if i < 20 else small[i]
        right = big[i] if not 40 <= i < 45 else np.zeros_like(big[i])  # the right face leaves for 5 frames
        images.append(np.hstack([left, right]))
    obs, _ = track(images, "crop")
    assert all(o.faces_seen == 1 for o in obs[:20])
    arrived = next(i for i, o in enumerate(obs) if o.faces_seen == 2)
    assert 20 <= arrived <= 20 + REDETECT_EVERY  # the second face, at the next periodic detection
    assert all(o.faces_seen == 2 and o.others for o in obs[arrived:40])
    assert all(o.faces_seen == 1 for o in obs[41:45])  # the right face gone, the left one still tracked
    back = next(i for i in range(45, 60) if obs[i].faces_seen == 2)
    assert back <= 45 + REDETECT_EVERY  # back at the next periodic detection (fewer faces tracked than max_faces)
    assert sum(o.present for o in obs) == 60


def test_a_face_that_jumps_is_re_anchored_by_the_detector_and_not_lost(clips):
    big = clips[0]
    h, w = big[0].shape[:2]
    images = []
    for i in range(30):
        canvas = np.zeros((h, 2 * w, 3), np.uint8)
        x = 0 if i < 15 else w // 2  # half the clip's width in one frame: further than the mesh's region reaches
        canvas[:, x:x + w] = big[i]
        images.append(canvas)
    obs, mesh = track(images, "crop")
    assert all(o.present for o in obs)
    before, after = obs[14].bbox, obs[15].bbox
    assert abs((after[0] + after[2]) / 2 - (before[0] + before[2]) / 2 - w // 2) < 10  # found where it went
    assert mesh.mesh.detections_run <= 6


def test_the_crop_path_is_the_default_and_the_whole_frame_one_is_kept():
    from avcall.pipelines.errors import InputError

    assert FaceTracker().tracking == "crop" and FaceTracker(tracking="full").tracking == "full"
    with pytest.raises(InputError):
        FaceTracker(tracking="sometimes")
