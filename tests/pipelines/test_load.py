"""Under load a live call sheds the work it can live without, a level at a time, and takes it back when calm."""

from __future__ import annotations

import asyncio

import numpy as np

from avcall.pipelines.frames import AudioFrame, FaceObservation, VideoFrame
from avcall.pipelines.load import LoadShedder
from avcall.pipelines.stages.annotate import Annotator
from avcall.pipelines.telemetry import Incidents


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


def _hops(shedder: LoadShedder, clock: Clock, seconds: float, late_s: float) -> None:
    """Hops of 10 ms leaving the audio path `late_s` after their time."""
    for _ in range(round(seconds * 100)):
        clock.t += 0.01
        shedder.heard(AudioFrame(pts=clock.t - late_s, samples=np.zeros(160, np.float32)))


def test_a_late_voice_sheds_a_level_a_second_and_a_calm_one_takes_them_back():
    clock, incidents = Clock(), Incidents()
    shedder = LoadShedder(clock, incidents=incidents)
    _hops(shedder, clock, 5.0, late_s=0.005)
    assert shedder.level == 0 and not shedder.skip("overlay") and not shedder.skip("emotion")
    _hops(shedder, clock, 0.5, late_s=0.2)
    assert shedder.level == 0  # a hiccup: nothing shed
    _hops(shedder, clock, 2.0, late_s=0.2)
    assert shedder.level == 2  # a level for each second late
    assert shedder.skip("overlay") and shedder.skip("overlay")  # every frame undrawn
    for work in ("avatar_frames", "emotion"):
        assert [shedder.skip(work) for _ in range(4)].count(True) == 2  # every other frame, every other hop
    assert not any(shedder.skip("video_analysis") for _ in range(4))  # level 3 only
    _hops(shedder, clock, 3.0, late_s=0.2)
    assert shedder.level == 3 and [shedder.skip("video_analysis") for _ in range(4)].count(True) == 2
    _hops(shedder, clock, 4.0, late_s=0.005)
    assert shedder.level == 3  # calm for less than calm_s
    _hops(shedder, clock, 20.0, late_s=0.005)
    assert shedder.level == 0
    counts = incidents.summary()["counts"]
    assert counts["shed:emotion"] == 2 and counts["shed:overlay"] == 2 and counts["shed:avatar_frames"] == 2
    assert counts["load_level"] == 6  # 0 -> 3 -> 0, each change noted


def test_a_shedding_overlay_sends_the_frames_as_they_came():
    clock = Clock()
    shedder = LoadShedder(clock)
    shedder.level = 2
    stage = Annotator()
    stage.shedder = shedder
    image = np.full((48, 64, 3), 60, np.uint8)
    landmarks = np.tile(np.array([[32.0, 24.0, 0.0]], np.float32), (478, 1))

    async def go():
        await stage.process(VideoFrame(pts=0.0, image=image))
        out = await stage.process(FaceObservation(pts=0.0, present=True, confidence=1.0, landmarks=landmarks))
        stage.shutdown_worker()
        return out

    video = [f for f in asyncio.run(go()) if isinstance(f, VideoFrame)]
    assert len(video) == 1 and video[0].image is image  # undrawn, not even copied
