"""AVAlign: the voice of a live call leaves as far behind its pts as the picture does, smoothly, and all of it."""

from __future__ import annotations

import asyncio

import numpy as np

from avcall.pipelines.clock import SessionClock
from avcall.pipelines.frames import AudioFrame, VideoFrame
from avcall.pipelines.stages.av_align import AVAlign


class SetClock(SessionClock):
    def __init__(self) -> None:
        super().__init__(0.0)
        self.t = 0.0

    def now(self) -> float:
        return self.t


def play(seconds: float, video_lag_s: float | None, audio_lag_s: float = 0.005, **kw):
    """30 fps video arriving `video_lag_s` after its pts (None: no camera), 10 ms hops `audio_lag_s` after
    theirs, in arrival order through the stage: [(departure time, frame)], the hold after each hop, the stage."""
    clock = SetClock()
    stage = AVAlign(clock, **kw)
    arrivals = [(i * 0.01 + 0.01 + audio_lag_s, AudioFrame(pts=i * 0.01, samples=np.zeros(160, np.float32)))
                for i in range(round(seconds * 100))]
    if video_lag_s is not None:
        arrivals += [(i / 30 + video_lag_s, VideoFrame(pts=i / 30, image=np.zeros((4, 4, 3), np.uint8), index=i))
                     for i in range(round(seconds * 30))]
    out, holds = [], []

    async def run():
        for t, frame in sorted(arrivals, key=lambda a: a[0]):
            clock.t = t
            out.extend((t, f) for f in await stage.process(frame))
            if isinstance(frame, AudioFrame):
                holds.append(stage.hold_s)
        out.extend((clock.t, f) for f in await stage.flush())

    asyncio.run(run())
    return out, np.array(holds), stage


def lags(out, kind) -> np.ndarray:
    return np.array([t - f.pts for t, f in out if isinstance(f, kind)])


def test_audio_is_held_to_the_video_lag_and_none_is_lost():
    out, _, stage = play(5.0, video_lag_s=0.060)
    audio = [f for _, f in out if isinstance(f, AudioFrame)]
    assert [f.pts for f in audio] == sorted(f.pts for f in audio) and len(audio) == 500  # all of it, in order
    settled = lags(out, AudioFrame)[100:-10]  # after the first second
    assert abs(np.median(settled) - 0.060) < 0.006  # leaves with the picture (within a hop)
    assert np.all(lags(out, VideoFrame) < 0.061)  # the picture is not held
    assert abs(stage.hold_s - 0.060) < 1e-6


def test_the_hold_moves_smoothly_is_capped_and_ends_when_the_camera_does():
    out, holds, stage = play(3.0, video_lag_s=0.8, max_hold_s=0.25)
    assert np.max(np.diff(holds)) <= 0.002 + 1e-9  # no jump a listener hears: 2 ms more per 10 ms hop
    assert stage.hold_s == 0.25 and np.max(lags(out, AudioFrame)) < 0.25 + 0.034  # 250 ms at most (+ a frame gap)
    out, holds, stage = play(2.0, video_lag_s=None)
    assert np.all(holds == 0.0) and np.all(lags(out, AudioFrame)[:-1] < 0.016)  # no camera: nothing held


def test_a_late_voice_holds_the_picture_to_it():
    """On a starved machine the voice comes later than the (shed) picture: the picture waits for it."""
    out, holds, stage = play(3.0, video_lag_s=0.010, audio_lag_s=0.120)
    video, audio = lags(out, VideoFrame)[30:], lags(out, AudioFrame)[100:]
    assert abs(np.median(video) - np.median(audio)) < 0.006  # with the voice (within half a hop)
    frames = [f.pts for _, f in out if isinstance(f, VideoFrame)]
    assert frames == sorted(frames) and len(frames) == 90  # every frame, in order
    out, _, _ = play(3.0, video_lag_s=0.010, audio_lag_s=0.8)
    assert np.max(lags(out, VideoFrame)[:-5]) < 0.25 + 0.012  # held 250 ms at most
