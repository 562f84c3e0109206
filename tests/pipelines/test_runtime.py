"""The pipeline runtime: queues, routing, flushing, telemetry and clean shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from avcall.pipelines.frames import AudioFrame, EndOfStream, Event, VideoFrame
from avcall.pipelines.queues import FrameQueue
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.sources.synthetic import SyntheticSource
from avcall.pipelines.stage import Stage

IMAGE = np.zeros((8, 8, 3), np.uint8)


def video(pts: float) -> VideoFrame:
    return VideoFrame(pts=pts, image=IMAGE)


def audio(pts: float) -> AudioFrame:
    return AudioFrame(pts=pts, samples=np.zeros(160, np.float32))


def test_live_queue_drops_oldest_video_never_audio():
    async def scenario():
        dropped = []
        queue = FrameQueue(live=True, max_droppable=2, on_drop=dropped.append)
        for i in range(5):
            await queue.put(video(i))
            await queue.put(audio(i))
        got = [(await queue.get())[1] for _ in range(len(queue))]
        return dropped, got

    dropped, got = asyncio.run(scenario())
    assert [f.pts for f in dropped] == [0, 1, 2]
    assert [f.pts for f in got if isinstance(f, AudioFrame)] == [0, 1, 2, 3, 4]
    assert [f.pts for f in got if isinstance(f, VideoFrame)] == [3, 4]


def test_offline_queue_blocks_instead_of_dropping():
    async def scenario():
        queue = FrameQueue(live=False, max_offline=3)
        for i in range(3):
            await queue.put(video(i))
        blocked = asyncio.create_task(queue.put(video(3)))
        await asyncio.sleep(0.05)
        was_blocked = not blocked.done()
        await queue.get()
        await asyncio.wait_for(blocked, 1)
        return was_blocked, len(queue)

    assert asyncio.run(scenario()) == (True, 3)


class Tag(Stage):
    """Accepts video; passes it on and emits an event naming the thread it worked on."""

    accepts = (VideoFrame,)

    async def process(self, frame):
        thread = await self.in_worker(lambda: threading.current_thread().name)
        return [frame, Event(pts=frame.pts, kind="tag", data={"thread": thread})]


class Hold(Stage):
    """Accepts events and holds them until the end of the stream: shows flush ordering."""

    accepts = (Event,)

    def __init__(self):
        super().__init__()
        self.held = []

    async def process(self, frame):
        self.held.append(frame)
        return []

    async def flush(self):
        return [Event(pts=-1, kind="flushed", data={"count": len(self.held)})]


def run(sources, stages, live=False):
    out = []
    pipeline = Pipeline(sources, stages, live=live, on_output=out.append)
    telemetry = asyncio.run(pipeline.run())
    return out, telemetry


def test_audio_bypasses_video_stages_and_flush_runs_before_the_end():
    out, telemetry = run([SyntheticSource(0.4, fps=25)], [Tag(), Hold()])
    kinds = [type(f).__name__ for f in out]
    assert kinds.count("AudioFrame") == 40 and kinds.count("VideoFrame") == 10
    flushed = [f for f in out if isinstance(f, Event)]
    assert len(flushed) == 1 and flushed[0].data["count"] == 10
    assert telemetry["Tag"]["frames_in"] == 10 and telemetry["Tag"]["frames_out"] == 20
    assert telemetry["Tag"]["latency_ms"]["max"] >= telemetry["Tag"]["service_ms"]["p50"] > 0


def test_inference_runs_off_the_event_loop_thread():
    tags = []

    class Collect(Stage):
        accepts = (Event,)

        async def process(self, frame):
            tags.append(frame.data["thread"])
            return []

    run([SyntheticSource(0.2)], [Tag(), Collect()])
    assert tags and all(name.startswith("avcall-Tag") for name in tags)
    assert threading.main_thread().name not in tags


class Slow(Stage):
    accepts = (VideoFrame,)

    async def process(self, frame):
        await self.in_worker(time.sleep, 0.05)
        return [frame]


def test_live_slow_stage_drops_video_and_keeps_every_audio_frame():
    out, telemetry = run([SyntheticSource(1.0, fps=50, realtime=True)], [Slow()], live=True)
    audio_out = [f for f in out if isinstance(f, AudioFrame)]
    assert len(audio_out) == 100  # never dropped
    assert np.allclose(np.diff([f.pts for f in audio_out]), 0.01)
    assert telemetry["Slow"]["dropped"] > 10  # 50 fps into a 20 fps stage
    assert telemetry["Slow"]["frames_in"] + telemetry["Slow"]["dropped"] == 50


class Boom(Stage):
    accepts = (VideoFrame,)

    def __init__(self):
        super().__init__()
        self.stopped = False

    async def process(self, frame):
        await self.in_worker(lambda: None)
        if frame.index == 3:
            raise RuntimeError("boom")
        return [frame]

    async def stop(self):
        self.stopped = True


def test_an_error_stops_everything_and_leaves_no_task_or_thread():
    before = set(threading.enumerate())
    boom = Boom()

    async def scenario():
        with pytest.raises(RuntimeError, match="boom"):
            await Pipeline([SyntheticSource(2.0)], [Tag(), boom, Hold()], live=False).run()
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(scenario()) == []
    assert boom.stopped
    time.sleep(0.1)
    assert set(threading.enumerate()) <= before


def test_cancellation_is_a_clean_shutdown():
    before = set(threading.enumerate())
    hold = Hold()

    async def scenario():
        pipeline = Pipeline([SyntheticSource(30.0, realtime=True)], [Tag(), hold], live=True)
        task = asyncio.create_task(pipeline.run())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pipeline.interrupted, [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    interrupted, tasks = asyncio.run(scenario())
    assert interrupted and tasks == []
    time.sleep(0.1)
    assert set(threading.enumerate()) <= before


def test_end_input_drains_and_flushes():
    hold = Hold()
    out = []

    async def scenario():
        pipeline = Pipeline([SyntheticSource(30.0, realtime=True)], [Tag(), hold], live=True, on_output=out.append)
        task = asyncio.create_task(pipeline.run())
        await asyncio.sleep(0.3)
        pipeline.end_input()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert any(isinstance(f, Event) and f.kind == "flushed" for f in out)
    assert not any(isinstance(f, EndOfStream) for f in out)
