"""A/V timing: video that flashes and audio that clicks at the same instants stay together through the
pipeline, and through `avcall process` into the mp4 it writes."""

from __future__ import annotations

import asyncio

import av
import numpy as np

from avcall.pipelines.frames import SAMPLE_RATE, AudioFrame, VideoFrame
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.sources.synthetic import SyntheticSource
from avcall.pipelines.stages.face_tracker import FaceTracker
from avcall.pipelines.stages.lip_features import LipFeatureExtractor
from tests.conftest import run_cli, write_media

FLASHES = (0.52, 1.32, 2.24)
FPS = 25


def click_onsets(times: np.ndarray, samples: np.ndarray) -> list[float]:
    loud = np.flatnonzero(np.abs(samples) > 0.5)
    onsets = [loud[0]] + [b for a, b in zip(loud, loud[1:]) if times[b] - times[a] > 0.2]
    return [float(times[i]) for i in onsets]


def flash_times(frames: list[tuple[float, np.ndarray]]) -> list[float]:
    return [pts for pts, image in frames if image.mean() > 180]


def assert_paired(flashes: list[float], clicks: list[float]) -> None:
    assert len(flashes) == len(clicks) == len(FLASHES), (flashes, clicks)
    for f, c in zip(flashes, clicks):
        assert abs(f - c) <= 1 / FPS, f"flash at {f:.3f} s, click at {c:.3f} s"


def test_pipeline_pts_of_flash_and_click_agree():
    out = []
    pipeline = Pipeline([SyntheticSource(3.0, fps=FPS, events=FLASHES)],
                        [FaceTracker(), LipFeatureExtractor()], live=False, on_output=out.append)
    asyncio.run(pipeline.run())
    audio = [f for f in out if isinstance(f, AudioFrame)]
    times = np.concatenate([f.pts + np.arange(len(f.samples)) / SAMPLE_RATE for f in audio])
    samples = np.concatenate([f.samples for f in audio])
    assert_paired(flash_times([(f.pts, f.image) for f in out if isinstance(f, VideoFrame)]),
                  click_onsets(times, samples))


def test_process_keeps_flash_and_click_within_one_frame(tmp_path):
    clip = write_media(tmp_path / "flash.mp4", seconds=3.0, size=(160, 120), fps=FPS, flashes=FLASHES)
    result = run_cli("process", str(clip), "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == 0, result.stderr
    with av.open(str(tmp_path / "out" / "annotated.mp4")) as container:
        video = [(f.time, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    with av.open(str(tmp_path / "out" / "annotated.mp4")) as container:
        chunks = [(f.time, f.to_ndarray().reshape(-1)) for f in container.decode(audio=0)]
    times = np.concatenate([t + np.arange(len(s)) / SAMPLE_RATE for t, s in chunks])
    samples = np.concatenate([s for _, s in chunks])
    assert_paired(flash_times(video), click_onsets(times, samples))
    lips = np.load(tmp_path / "out" / "lips.npz")
    assert np.allclose(lips["pts"], [t for t, _ in video], atol=1e-3)  # one lip row per video frame, same clock
