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


def test_stages_report_their_state_as_events_and_the_page_gets_no_stage_field():
    """Meters and modes travel as "state" events, like captions: the served page's telemetry folds them in
    (EventChannelSink's on_state) and the data channel carries only the other events."""
    from avcall.pipelines.frames import Event
    from avcall.pipelines.sinks.webrtc import EventChannelSink
    from avcall.pipelines.stages.taps import REPORT_EVERY_S, LevelMeter

    class Caption(Stage):
        accepts = (AudioFrame,)

        async def process(self, frame):
            return [frame, Event(pts=frame.pts, kind="caption", data={"text": "hi"})] if frame.pts == 0 else [frame]

    state, sent, history = {}, [], []
    slow, meter, enhancer = Recorder("slow", delay_s=0.01), LevelMeter("level_in"), SpeechEnhancer(Delay())

    def fold(values: dict) -> None:
        history.append(dict(values))
        state.update(values)

    seconds = 1.0
    pipeline = Pipeline([SyntheticSource(seconds)], [slow, meter, enhancer, Caption("caption"),
                                                    EventChannelSink(sent.append, on_state=fold)], live=False)

    async def run():
        task = asyncio.ensure_future(pipeline.run())
        while slow.audio < 20:
            await asyncio.sleep(0.01)
        await pipeline.control({"enhance": "off"})
        await task

    asyncio.run(run())
    assert [h["enhance"] for h in history if "enhance" in h] == ["stub", "off"]  # at start, then switched
    levels = [h["level_in_db"] for h in history if "level_in_db" in h]
    assert seconds / REPORT_EVERY_S - 1 <= len(levels) <= seconds / REPORT_EVERY_S + 1
    assert all(-90 < level < 0 for level in levels) and state["level_in_db"] == levels[-1]
    assert [m for m in sent if '"state"' in m] == [] and any('"caption"' in m for m in sent)
