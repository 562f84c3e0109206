"""A stage that gets slow (an injected delay) in a live call: video frames are dropped, audio passes through
unprocessed, every audio sample still comes out, nothing stalls; the incidents say so."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from avcall.pipelines.clock import SessionClock
from avcall.pipelines.frames import AudioFrame, VideoFrame
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.sources.synthetic import SyntheticSource
from avcall.pipelines.stage import Stage

SECONDS = 3.0
STALL_S = 0.35  # the longest an output may go quiet


class SlowModel(Stage):
    """A model stage (one the call can go on without) that takes `delay_s` per frame on its worker."""

    accepts = (VideoFrame, AudioFrame)
    passthrough = True

    def __init__(self, delay_s: float) -> None:
        super().__init__("slow_model")
        self.delay_s = delay_s

    async def process(self, frame):
        await self.in_worker(time.sleep, self.delay_s)
        return [frame]


def run_live(stages, clock: SessionClock):
    """A 30 fps call through `stages` at real time: (arrivals as (session time, frame), report)."""
    out = []
    source = SyntheticSource(SECONDS, clock=clock, realtime=True, fps=30)
    pipeline = Pipeline([source], stages, live=True, on_output=lambda f: out.append((clock.now(), f)))
    asyncio.run(pipeline.run())
    return out, pipeline.report()


def assert_flowed(out, clock_kind=AudioFrame) -> np.ndarray:
    """Every output arrives without a stall; returns the audio arrivals' lag behind their pts."""
    audio = [(t, f) for t, f in out if isinstance(f, AudioFrame)]
    arrivals = np.array([t for t, _ in audio])
    assert np.diff(arrivals).max() < STALL_S, f"the voice stalled for {np.diff(arrivals).max():.2f} s"
    video = np.array([t for t, f in out if isinstance(f, VideoFrame)])
    assert np.diff(video).max() < STALL_S, f"the video stalled for {np.diff(video).max():.2f} s"
    return np.array([t - f.pts for t, f in audio])


def test_a_slow_model_drops_video_and_passes_audio_through():
    clock = SessionClock()
    out, report = run_live([SlowModel(0.06)], clock)  # 60 ms a frame: 16 frames a second, 130 arrive
    audio = [f for _, f in out if isinstance(f, AudioFrame)]
    assert sum(len(f.samples) for f in audio) == SECONDS * 16_000  # every sample of the voice came out
    lag = assert_flowed(out)
    assert lag.max() < 0.5  # audio waits at most late_s (0.2 s) plus a frame in progress
    counts, stage = report["incidents"]["counts"], report["stages"]["slow_model"]
    assert stage["dropped"] > 20 and counts["frames_dropped"] == stage["dropped"]  # video: latest wins
    assert counts["late_passthrough:slow_model"] > 100  # audio: passed by, unprocessed
    assert counts["audio_passthrough_samples"] == 160 * counts["late_passthrough:slow_model"]
    assert stage["passed_through"] == counts["late_passthrough:slow_model"]


def test_a_slow_enhancer_passes_the_voice_through_in_step():
    from avcall.pipelines.stages.speech_enhancer import SpeechEnhancer
    from avcall.pipelines.suppressors import DEFAULT, open_suppressor
    from avcall.pipelines.features import enhancers

    if DEFAULT not in enhancers():
        pytest.skip(f"{DEFAULT} does not ship on this machine")
    model = open_suppressor(DEFAULT)
    fast = model.push

    def slow(hop):  # three times slower than real time
        time.sleep(0.03)
        return fast(hop)

    model.push = slow
    clock = SessionClock()
    out, report = run_live([SpeechEnhancer(model, clock=clock)], clock)
    audio = [f for _, f in out if isinstance(f, AudioFrame)]
    assert len(audio) == SECONDS * 100 and all(len(f.samples) == 160 for f in audio)  # one hop out per hop in
    assert np.all(np.diff([f.pts for f in audio]) > 0)  # in order, on the input's clock
    assert_flowed(out)
    counts, stage = report["incidents"]["counts"], report["stages"]["speech_enhancer"]
    assert stage["passed_through"] > 50 and stage["enhanced"] > 10  # it keeps up by passing hops through
    assert counts["audio_passthrough_samples"] == 160 * stage["passed_through"]
