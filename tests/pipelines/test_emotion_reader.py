"""The EmotionReader pairs face and voice by pts, not by arrival: what each hop saw, with the nets left out."""

from __future__ import annotations

import asyncio

import numpy as np

from avcall.pipelines.frames import AudioFrame, FaceObservation, VideoFrame
from avcall.pipelines.stages.emotion import EmotionReader, EmotionReading


class Recorder(EmotionReader):
    """The reader with its nets replaced by a note of what each hop was given."""

    def __init__(self, **kw) -> None:
        super().__init__(models=object(), method="none", **kw)
        self.seen: list[tuple[float, bool]] = []  # (pts, a face given)

    async def start(self) -> None:
        pass

    def read(self, pts, face, voice) -> EmotionReading:
        self.seen.append((pts, face is not None))
        return EmotionReading(pts, {}, 0.0, 0.0, "neutral", 0.0, ())


def _video(t: float, k: int) -> list:
    landmarks = np.zeros((478, 3), np.float32)
    return [VideoFrame(pts=t, image=np.zeros((48, 64, 3), np.uint8), index=k),
            FaceObservation(pts=t, present=True, confidence=1.0, landmarks=landmarks)]


def _audio(t: float) -> AudioFrame:
    return AudioFrame(pts=t, samples=np.zeros(320, np.float32))


def _run(stage: Recorder, frames: list, pause: float = 0.0) -> list[tuple[float, bool]]:
    async def go():
        await stage.start()
        try:
            for f in frames:
                await stage.process(f)
                await asyncio.sleep(pause)
            await stage.flush()
        finally:
            await stage.stop()
            stage.shutdown_worker()
        return stage.seen

    return asyncio.run(go())


def test_from_a_file_each_hop_waits_for_the_face_of_its_time():
    """From a file the audio skips the tracker and arrives seconds before the faces of its time."""
    seconds, lead = 4.0, 2.0
    frames = [(t + lead, 0, f) for k, t in enumerate(np.arange(0, seconds, 0.04)) for f in _video(float(t), k)]
    frames += [(t, 1, _audio(float(t))) for t in np.arange(0, seconds, 0.02)]
    frames.sort(key=lambda x: (x[0], x[1]))
    seen = _run(Recorder(live=False, wait_for_face=True), [f for _, _, f in frames])
    assert len(seen) >= 14  # every 0.25 s of 4 s
    assert all(face for _, face in seen), seen
    assert [t for t, _ in seen] == sorted(t for t, _ in seen)


def test_live_a_face_and_its_image_pair_in_either_order():
    """A live queue that drops video moves the frames it keeps up in line: an observation may come before its
    image (here every one), an image with no observation between."""
    frames = []
    for k, t in enumerate(np.arange(0, 3.0, 0.04)):
        image, obs = _video(float(t), k)
        frames += [obs, image] if k % 5 else [image]
        frames += [_audio(float(t)), _audio(float(t) + 0.02)]
    seen = _run(Recorder(live=True), frames, pause=0.001)
    assert len(seen) >= 8
    assert sum(face for _, face in seen) >= len(seen) - 1, seen
