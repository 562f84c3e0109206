"""A camera that vanishes mid-call and comes back, a microphone that skips or stalls: the call goes on (the
other stream never waits), nothing drifts, and the run's incidents say what happened and when."""

from __future__ import annotations

import asyncio

import numpy as np

from avcall.pipelines.clock import SessionClock
from avcall.pipelines.frames import AudioFrame, VideoFrame
from avcall.pipelines.runner import Pipeline
from tests.faults.devices import FakeCapture, FakeMic, Outage, flaky_camera


def run_call(make_sources, seconds: float, probe_at: float | None = None):
    """The sources through an empty live pipeline for `seconds`: (video, audio, report, report at probe_at)."""
    clock = SessionClock()
    out = []

    async def scenario():
        pipeline = Pipeline(make_sources(clock), [], live=True, on_output=out.append)
        run = asyncio.ensure_future(pipeline.run())
        probe = None
        if probe_at is not None:
            await asyncio.sleep(probe_at - clock.now())
            probe = pipeline.report()
        await asyncio.sleep(seconds - clock.now())
        assert not run.done(), "the call ended by itself"
        pipeline.end_input()
        await asyncio.wait_for(run, 10)
        return pipeline.report(), probe

    report, probe = asyncio.run(scenario())
    video = [f for f in out if isinstance(f, VideoFrame)]
    audio = [f for f in out if isinstance(f, AudioFrame)]
    return video, audio, report, probe


def events(report: dict, kind: str) -> list[dict]:
    return [e for e in report["incidents"]["events"] if e["kind"] == kind]


def test_camera_vanishes_and_comes_back_while_the_voice_goes_on():
    outage = {}

    def sources(clock):
        outage["camera"] = Outage(1.0, 2.0, began=clock.start)
        return [flaky_camera(outage["camera"], clock), FakeMic(Outage(began=clock.start), clock)]

    video, audio, report, during = run_call(sources, 3.5, probe_at=1.6)
    assert [e["kind"] for e in events(during, "camera_lost")] == ["camera_lost"]  # said while it is gone
    assert not events(during, "camera_back")
    assert any(f.pts < 0.9 for f in video) and any(f.pts > 2.3 for f in video)  # before and after
    assert not any(1.1 < f.pts < 1.95 for f in video)  # nothing while it was gone
    pts = np.array([f.pts for f in audio])
    assert pts[-1] > 3.0 and np.diff(pts).max() < 0.03  # the voice never paused
    lost, back = events(report, "camera_lost"), events(report, "camera_back")
    assert len(lost) == 1 and len(back) == 1
    assert 0.9 < lost[0]["pts"] < 1.3 and 0.6 < back[0]["after_s"] < 1.5
    assert report["incidents"]["counts"]["camera_lost_s"] == back[0]["after_s"]
    assert FakeCapture.open_count == 0  # every capture opened while retrying was released


def test_microphone_gap_is_counted_and_the_voice_keeps_its_time():
    def sources(clock):
        return [flaky_camera(Outage(began=clock.start), clock), FakeMic(Outage(1.0, 1.3, began=clock.start), clock)]

    video, audio, report, _ = run_call(sources, 2.5)
    gaps = events(report, "mic_gap")
    assert len(gaps) == 1 and 0.2 < gaps[0]["gap_s"] < 0.45
    assert 0.2 < report["incidents"]["counts"]["mic_gap_s"] < 0.45
    pts = np.array([f.pts for f in audio])
    jumps = np.diff(pts)
    assert (jumps > 0.1).sum() == 1  # one hole in the voice, where the samples were skipped ...
    hole = int(np.argmax(jumps))
    assert 0.9 < pts[hole] < 1.2 and abs(jumps[hole] - gaps[0]["gap_s"]) < 0.05  # ... as long as the gap
    assert pts[-1] > 2.2  # and the hops after it keep their true time
    assert len([f for f in video if 1.0 < f.pts < 1.3]) >= 5  # the video did not wait for it
    assert not events(report, "mic_stalled")


def test_microphone_stall_is_reported_while_it_lasts_and_the_video_goes_on():
    def sources(clock):
        return [flaky_camera(Outage(began=clock.start), clock),
                FakeMic(Outage(1.0, 2.6, began=clock.start), clock, stall_s=0.5)]

    video, audio, report, during = run_call(sources, 3.5, probe_at=2.2)
    stalled = events(during, "mic_stalled")  # reported during the stall, not only after it
    assert len(stalled) == 1 and 0.9 < stalled[0]["pts"] < 1.3
    back = events(report, "mic_back")
    assert len(back) == 1 and 1.2 < back[0]["after_s"] < 2.0
    assert len([f for f in video if 1.1 < f.pts < 2.5]) >= 25  # the video went on through it
    assert any(f.pts > 2.7 for f in audio)  # and the voice came back
    assert 1.3 < report["incidents"]["counts"]["mic_gap_s"] < 1.9
