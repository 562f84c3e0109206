"""The corpus maker's renderer: rendered videos, run back through the real tracker, give back their lip track."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest
from avcall.pipelines.face.lip_track import LIP_FPS, LipTrack
from avcall.pipelines.face.render import PortraitRenderer, default_portrait, load_portrait, render_video, shape_measures
from avcall.pipelines.errors import InputError
from avcall.pipelines.frames import SAMPLE_RATE, AudioFrame, FaceObservation, VideoFrame
from avcall.pipelines.sources.file import FileSource
from avcall.pipelines.stages.face_tracker import FaceTracker
from avcall.pipelines.face.mesh import INNER_LOWER, INNER_UPPER, LIP_INDICES, OUTER_LOWER, OUTER_UPPER, lip_features
from scipy.ndimage import gaussian_filter1d

from tests.conftest import read_all

POS = {int(m): i for i, m in enumerate(LIP_INDICES)}


def lip_positions(indices) -> np.ndarray:
    return np.array([POS[m] for m in indices])


def opened(neutral: np.ndarray, opening: float, spread: float) -> np.ndarray:
    """The neutral shape with the mouth opened to `opening` (IOD) and widened by `spread` (share of the width).

    The lower lip goes down (inner most, outer a bit less, most at the middle), the upper lip up a little,
    the corners come in a little as the mouth opens."""
    s = neutral.astype(np.float64).copy()
    extra = opening - shape_measures(neutral)[0]
    mid, half = (s[POS[61], 0] + s[POS[291], 0]) / 2, (s[POS[291], 0] - s[POS[61], 0]) / 2
    for indices, share in ((INNER_LOWER, 0.8), (OUTER_LOWER, 0.65), (INNER_UPPER, -0.2), (OUTER_UPPER, -0.12)):
        idx = lip_positions(indices)
        s[idx, 1] += share * extra * np.sqrt(np.clip(1 - ((s[idx, 0] - mid) / half) ** 2, 0, 1))
    s[:, 0] = mid + (s[:, 0] - mid) * (1 + spread - 0.15 * max(extra, 0.0))
    return s - s.mean(axis=0)


def driving_track(neutral: np.ndarray, seconds: float, seed: int) -> LipTrack:
    """Smooth random openings over 0-0.35 IOD and widths over +-10 %, measured as lip_features measures."""
    rng = np.random.default_rng(seed)
    n = round(seconds * LIP_FPS)
    opening = gaussian_filter1d(rng.uniform(0, 1, n), 2.0)
    opening = (opening - opening.min()) / np.ptp(opening) * 0.35
    spread = gaussian_filter1d(rng.uniform(-1, 1, n), 4.0)
    spread = spread / np.abs(spread).max() * 0.1
    lips = np.stack([opened(neutral, o, w) for o, w in zip(opening, spread)]).astype(np.float32)
    measures = np.array([shape_measures(s) for s in lips])
    return LipTrack(lips, measures[:, 0], measures[:, 1], np.ones(n, bool), np.ones(n, np.float32))


def track_video(path) -> tuple[list, list]:
    """The mp4 decoded by the pipeline's file source, every video frame through the tracker and lip_features."""
    frames = asyncio.run(read_all(FileSource(path)))
    tracker = FaceTracker()
    tracker.open()
    try:
        lips = [lip_features(tracker.observe(f)) for f in frames if isinstance(f, VideoFrame)]
    finally:
        tracker.close()
    return lips, [f for f in frames if isinstance(f, AudioFrame)]


@pytest.fixture(scope="module")
def renderer() -> PortraitRenderer:
    return PortraitRenderer()


def test_shape_measures_are_lip_features_measures():
    rng = np.random.default_rng(3)
    landmarks = np.zeros((478, 3), np.float32)
    landmarks[:, :2] = rng.uniform(100, 200, (478, 2))
    feats = lip_features(FaceObservation(pts=0, present=True, confidence=1, landmarks=landmarks))
    assert np.allclose(shape_measures(feats.shape), (feats.opening, feats.width), atol=1e-5)


def test_rendered_video_gives_back_its_lip_track(tmp_path, renderer):
    track = driving_track(renderer.neutral_shape, 4.0, seed=0)
    voice = (0.1 * np.sin(2 * np.pi * 220 * np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    path = tmp_path / "talk.mp4"
    render_video(path, track, voice)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == ["talk.mp4"]  # no temporary left
    measured, audio = track_video(path)
    assert len(measured) == len(track) and all(m.present for m in measured)
    assert abs(sum(len(a.samples) for a in audio) / SAMPLE_RATE - 4.0) < 0.1
    opening = np.array([m.opening for m in measured])
    width = np.array([m.width for m in measured])
    r_opening = np.corrcoef(track.opening, opening)[0, 1]
    r_width = np.corrcoef(track.width, width)[0, 1]
    shape_error = np.linalg.norm(np.stack([m.shape for m in measured]) - track.lips, axis=2).mean()
    print(f"r(opening)={r_opening:.3f} r(width)={r_width:.3f} shape error={shape_error:.4f} IOD")
    assert r_opening >= 0.9
    assert r_width >= 0.7 and shape_error < 0.04


def test_same_inputs_give_the_same_bytes(tmp_path, renderer):
    track = driving_track(renderer.neutral_shape, 1.0, seed=1)
    track.face_present[5:9] = False  # the tracker lost the face: the renderer still shows one
    track.lips[5:9] = 0
    voice = np.random.default_rng(0).normal(0, 0.05, SAMPLE_RATE).astype(np.float32)
    paths = [tmp_path / f"{name}.mp4" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (7, 7, 8)):
        render_video(path, track, voice, seed=seed)
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b and a != c  # another seed, another head motion and other blinks
    assert b"creation_time" not in a


def test_frames_are_deterministic_and_move(renderer):
    neutral = renderer.neutral_shape
    frame = renderer.render(neutral, 1.0)
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
    again = PortraitRenderer(seed=0)
    assert np.array_equal(again.render(neutral, 1.0), frame)
    assert not np.array_equal(renderer.render(neutral, 2.5), frame)  # head motion
    closures = np.array([renderer.blink_closure(t) for t in np.arange(0, 20, 0.01)])
    starts = np.flatnonzero(np.diff((closures > 0).astype(int)) == 1) * 0.01
    assert len(starts) >= 3 and np.all(np.diff(starts) >= 1.9) and np.all(np.diff(starts) <= 6.3)
    assert closures.max() > 0.99


def test_portrait_from_a_file(tmp_path):
    face = cv2.resize(default_portrait()[20:260, 110:350], (360, 360), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "face.png"), face)
    portrait = load_portrait(tmp_path / "face.png")
    r = PortraitRenderer(portrait, size=192)
    wide = opened(r.neutral_shape, 0.3, 0.0)
    frame = r.render(wide, 0.0)
    assert frame.shape == (192, 192, 3)
    assert not np.array_equal(frame, r.render(r.neutral_shape, 0.0))


def test_portrait_from_shared_data(shared_data):
    path = shared_data / "faces" / "LivePortrait_s1.jpg"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    r = PortraitRenderer(load_portrait(path))
    assert r.render(r.neutral_shape, 0.5).shape == (256, 256, 3)
    assert 0.6 < r.neutral_width < 1.4


def test_no_face_is_a_clear_input_error(tmp_path):
    grey = np.full((240, 320, 3), 128, np.uint8)
    with pytest.raises(InputError, match="no face found in the portrait"):
        PortraitRenderer(grey)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    with pytest.raises(InputError, match="grey.png: no face found"):
        load_portrait(tmp_path / "grey.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        load_portrait(tmp_path / "text.png")
    with pytest.raises(InputError, match="no such file"):
        load_portrait(tmp_path / "missing.png")
