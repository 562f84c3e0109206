"""The active speaker: two real GRID speakers side by side, the silent one the larger; the pipeline follows
the one whose voice is heard, and the largest again when the voice is the larger one's."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest
from avcall.pipelines.frames import AudioFrame, FaceObservation, VideoFrame
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.stages.active_speaker import ActiveSpeaker
from avcall.pipelines.stages.face_tracker import FaceTracker

from tests.pipelines.test_sinks import Frames

SMALL, LARGE = "GRID_bbaf2n.mpg", "GRID_lbbc2a.mpg"


@pytest.fixture(scope="module")
def composite(shared_data):
    import av

    from avcall.pipelines.runtime import weights_path

    if not weights_path("sync_lips.onnx").is_file():
        pytest.skip("the sync judge is not shipped in models/weights/")

    def frames(name):
        with av.open(str(shared_data / "talking_faces" / name)) as c:
            return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]

    small, large = frames(SMALL), frames(LARGE)
    n = min(len(small), len(large))
    small, large = small[:n] * 2, large[:n] * 2  # each clip twice: 6 s
    h, w = large[0].shape[:2]
    images = []
    for i in range(2 * n):
        left = np.zeros_like(large[i])
        shrunk = cv2.resize(small[i], (int(w * 0.75), int(h * 0.75)), interpolation=cv2.INTER_AREA)
        y, x = (h - shrunk.shape[0]) // 2, (w - shrunk.shape[1]) // 2
        left[y:y + shrunk.shape[0], x:x + shrunk.shape[1]] = shrunk
        images.append(np.hstack([left, large[i]]))
    return images, w


def followed(images, voice: np.ndarray) -> tuple[list[FaceObservation], list[dict]]:
    voice = np.concatenate([voice[:len(images) // 2 * 640]] * 2)  # looped with the faces
    frames = [VideoFrame(pts=i / 25, image=im, index=i) for i, im in enumerate(images)]
    frames += [AudioFrame(pts=k / 100, samples=voice[k * 160:(k + 1) * 160]) for k in range(len(voice) // 160)]
    out = []
    pipeline = Pipeline([Frames(sorted(frames, key=lambda f: f.pts))], [FaceTracker(max_faces=2), ActiveSpeaker()],
                        live=False, on_output=out.append)
    asyncio.run(pipeline.run())
    return [f for f in out if isinstance(f, FaceObservation)], pipeline.incidents.summary()["events"]


def on_left(observations, width: int, after_s: float) -> float:
    late = [o for o in observations if o.pts >= after_s and o.present]
    return float(np.mean([(o.bbox[0] + o.bbox[2]) / 2 < width for o in late]))


def test_the_speaking_face_is_followed_not_the_largest(composite, shared_data):
    from avcall.models.data.measure import clip_signals

    images, width = composite
    _, voice = clip_signals(shared_data / "talking_faces" / SMALL)
    observations, events = followed(images, voice)
    assert all(o.faces_seen == 2 for o in observations[:10])  # both faces are seen
    assert on_left(observations, width, 0.0) < 1.0  # the tracker alone takes the larger, silent one first
    assert on_left(observations, width, 2.5) >= 0.95  # ... the speaking one is followed once it is judged
    assert [e for e in events if e["kind"] == "active_speaker"]


def test_the_largest_face_speaking_stays_followed(composite, shared_data):
    from avcall.models.data.measure import clip_signals

    images, width = composite
    _, voice = clip_signals(shared_data / "talking_faces" / LARGE)
    observations, _ = followed(images, voice)
    assert on_left(observations, width, 0.0) <= 0.05
