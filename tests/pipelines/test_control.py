"""Control frames: a user's switch travels down the pipeline ahead of the media waiting there, visits every
stage in order, and each stage takes the names it knows (the served page's toggles: no stage field is
written from outside)."""

from __future__ import annotations

import asyncio

import numpy as np

from avcall.pipelines.frames import AudioFrame
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.sources.synthetic import SyntheticSource
from avcall.pipelines.stage import Stage
from avcall.pipelines.stages.annotate import Annotator
from avcall.pipelines.stages.speech_enhancer import SpeechEnhancer
from tests.pipelines.test_enhancer_stage import Delay


class Recorder(Stage):
    """Notes, for each control it gets, how many audio frames it had seen by then; slow on audio."""

    accepts = (AudioFrame,)

    def __init__(self, name: str, delay_s: float = 0.0) -> None:
        super().__init__(name)
        self.delay_s, self.audio, self.controls = delay_s, 0, []

    def on_control(self, values: dict) -> None:
        self.controls.append((dict(values), self.audio))

    async def process(self, frame):
        self.audio += 1
        await asyncio.sleep(self.delay_s)
        return [frame]


def test_a_control_overtakes_the_media_and_every_stage_takes_its_names():
    slow, last = Recorder("slow", delay_s=0.01), Recorder("last")
    enhancer, overlay = SpeechEnhancer(Delay()), Annotator()
    pipeline = Pipeline([SyntheticSource(1.0)], [slow, enhancer, overlay, last], live=False)

    async def run():
        task = asyncio.ensure_future(pipeline.run())
        while slow.audio < 10:  # a backlog of audio waits in front of the slow stage
            await asyncio.sleep(0.01)
        await pipeline.control({"enhance": "off", "overlay": False})
        await task

    asyncio.run(run())
    (values, seen_slow), = slow.controls
    (_, seen_last), = last.controls
    assert values == {"enhance": "off", "overlay": False}
    assert seen_last <= seen_slow + 1 < 100  # it reached the last stage ahead of the audio queued behind it
    assert enhancer.mode == "off" and overlay.enabled is False  # each took its own names


def test_before_the_run_the_stages_take_it_at_once():
    enhancer = SpeechEnhancer(Delay())
    pipeline = Pipeline([SyntheticSource(0.1)], [enhancer], live=False)
    asyncio.run(pipeline.control({"enhance": "off", "unknown": np.int64(3)}))
    assert enhancer.mode == "off"
