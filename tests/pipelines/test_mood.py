"""The mood indicator of `avcall live --emotion` (the window and annotated.mp4): drawn while emotion readings
come, never otherwise, and gone once they stop."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import numpy as np
import pytest

from avcall.pipelines.frames import AudioFrame, Event, VideoFrame
from avcall.pipelines.stages.mood import MoodOverlay, draw_mood
from tests.conftest import needs_emotion_weights
from tests.pipelines.test_sinks import Frames

SIZE = (640, 480)
BOX = (slice(8, 72), slice(SIZE[0] - 208, SIZE[0] - 8))  # where the indicator sits at 640 px (top right)


def drawn(image: np.ndarray, original: np.ndarray) -> bool:
    """The indicator's darkened box is there."""
    return float(image[BOX].mean()) < 0.6 * float(original[BOX].mean())


def reading(pts: float, leading: str = "happy", confidence: float = 0.7) -> Event:
    return Event(pts=pts, kind="emotion", data={"probs": {}, "valence": 0.5, "arousal": 0.3, "leading": leading,
                                                "confidence": confidence, "sources": ["face"]})


def test_draw_mood_fits_any_frame():
    from avcall.pipelines.stages.mood import Mood

    for w, h in ((640, 480), (64, 48), (1920, 1080)):
        image = np.full((h, w, 3), 180, np.uint8)
        out = draw_mood(image, Mood(0.0, "sad", 0.4))
        assert out.shape == image.shape and np.all(image == 180)  # a copy: the input is untouched
        assert not np.array_equal(out, image)


def test_indicator_follows_the_readings():
    """No reading yet: nothing drawn; readings every 0.25 s: drawn; readings stopped (the reader switched off):
    gone after a second; other events never draw."""
    image = np.full((SIZE[1], SIZE[0], 3), 200, np.uint8)
    frames = [VideoFrame(pts=k / 25, image=image, index=k) for k in range(125)]  # 5 s
    events = [reading(1.0 + 0.25 * i) for i in range(8)]  # read from 1.0 s to 2.75 s, then off
    events.append(Event(pts=3.0, kind="caption", data={"text": "hello"}))
    stage = MoodOverlay()

    async def run():
        out = []
        for frame in sorted(frames + events, key=lambda f: (f.pts, isinstance(f, VideoFrame))):
            out += await stage.process(frame)
        return [f for f in out if isinstance(f, VideoFrame)]

    shown = {round(f.pts, 2): drawn(f.image, image) for f in asyncio.run(run())}
    assert not any(v for t, v in shown.items() if t < 0.75)  # before the first reading (one hop of slack)
    assert all(v for t, v in shown.items() if 1.0 <= t <= 3.7)  # while read, and up to 1 s after the last
    assert not any(v for t, v in shown.items() if t > 3.8)  # the readings stopped: the indicator went


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), SIZE)


class Paced(Frames):
    """The frames at the pace of their pts, as a camera and a microphone give them: the session clock starts
    with the first frame (a camera stamps its frames with that clock)."""

    clock = None

    async def recv(self):
        loop = asyncio.get_running_loop()
        if not hasattr(self, "began"):
            self.began = loop.time()
            if self.clock is not None:
                self.clock.start = self.began  # loop.time() is time.monotonic()
        if self.frames:
            await asyncio.sleep(max(0.0, self.began + self.frames[0].pts - loop.time()))
        return await super().recv()


def _call_video(portrait: np.ndarray, emotion: bool) -> list[VideoFrame]:
    """The live path's stages (`build_call`, as `avcall live` builds them) over 3 s of the portrait and a
    quiet room, at real time; the video frames that come out (none dropped: the queues wait)."""
    from avcall.pipelines.call import CallConfig, Transport, build_call
    from avcall.pipelines.clock import SessionClock
    from avcall.pipelines.runner import Pipeline

    rng = np.random.default_rng(0)
    frames = [VideoFrame(pts=k / 25, image=portrait, index=k) for k in range(75)]
    frames += [AudioFrame(pts=s / 16000, samples=rng.normal(0, 3e-4, 320).astype(np.float32))
               for s in range(0, 3 * 16000, 320)]
    frames.sort(key=lambda f: (f.pts, isinstance(f, VideoFrame)))
    clock = SessionClock()
    call = build_call(CallConfig(emotion=emotion), Transport(clock, SIZE, Fraction(25), has_audio=True, live=True))
    out: list[VideoFrame] = []
    source = Paced(frames)
    source.clock = clock
    pipeline = Pipeline([source], call.stages, live=False,
                        on_output=lambda f: out.append(f) if isinstance(f, VideoFrame) else None)
    asyncio.run(pipeline.run())
    return out


@needs_emotion_weights
def test_live_stages_draw_the_indicator_only_with_emotion(portrait):
    off = _call_video(portrait, emotion=False)
    on = _call_video(portrait, emotion=True)
    assert len(off) == len(on) == 75
    assert not any(drawn(f.image, portrait) for f in off)
    late = [f for f in on if f.pts >= 1.0]  # past the first readings
    assert all(drawn(f.image, portrait) for f in late)


@needs_emotion_weights
def test_readings_are_written_only_when_recorded(tmp_path):
    """`avcall live --emotion` without --record shows the readings and writes none (keep_emotion=False), not
    even to its scratch folder; with --record they are kept beside the other outputs."""
    from avcall.app.process import ProcessConfig, run_process
    from tests.conftest import write_media

    clip = write_media(tmp_path / "clip.mp4", seconds=1.5)
    for keep in (False, True):
        out = tmp_path / f"keep_{keep}"
        run_process(ProcessConfig(input=clip, outdir=out, emotion=True, keep_emotion=keep), progress=False)
        written = {p.name for p in out.iterdir()}
        assert ({"emotion.jsonl", "emotion.png"} <= written) == keep, written
        assert "annotated.mp4" in written
