"""`--avatar voice`: the avatar has a frame for every 40 ms of voice, on the 25 fps grid, in order, however the
voice arrives (the net's look-ahead is played out with silence at the end: the video was 1-2 frames short);
and the renderer gives the same frame for the same lips and time."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from avcall.pipelines.face.render import PortraitRenderer
from avcall.pipelines.frames import SAMPLE_RATE, AudioFrame, VideoFrame
from avcall.pipelines.stages.talking_face import TalkingFace


LOWER = np.r_[11:20, 31:40]  # the outer and inner lower lip of the tracker's 40 lip points


class LoudNet:
    """A stand-in for the voice-to-lips net: the mouth opens with the hop's loudness (no weights needed)."""

    def __init__(self) -> None:
        from avcall.pipelines.face.lip_model import LipModel

        self.mean = LipModel.load().mean.astype(np.float32)

    def step(self, hop: np.ndarray) -> np.ndarray:
        out = np.zeros(82, np.float32)
        out[2 * LOWER + 1] = 0.3 * float(np.sqrt(np.mean(hop ** 2)))  # the lower lip's points move down
        return out


@pytest.fixture(scope="module")
def renderer() -> PortraitRenderer:
    return PortraitRenderer(size=128)


def run_voice(renderer, seconds: float, chunk: int, start: float = 0.0) -> list[VideoFrame]:
    stage = TalkingFace(mode="voice", net=LoudNet())
    stage.renderer = renderer
    voice = (0.2 * np.random.default_rng(0).standard_normal(round(seconds * SAMPLE_RATE))).astype(np.float32)

    async def go():
        out = []
        for i in range(0, len(voice), chunk):
            out += await stage.process(AudioFrame(pts=start + i / SAMPLE_RATE, samples=voice[i:i + chunk]))
        out += await stage.flush()
        stage.shutdown_worker()
        return [f for f in out if isinstance(f, VideoFrame)]
    return asyncio.run(go())


@pytest.mark.parametrize("seconds,chunk", [(1.0, 320), (1.03, 480), (0.5, 160)])
def test_voice_avatar_has_a_frame_for_every_40_ms_of_voice(renderer, seconds, chunk):
    frames = run_voice(renderer, seconds, chunk)
    n = int(np.ceil(round(seconds * 25, 6)))
    assert len(frames) == n
    assert np.allclose([f.pts for f in frames], np.arange(n) / 25, atol=1e-9)
    assert [f.index for f in frames] == list(range(n))
    assert all(f.image.shape == (128, 128, 3) for f in frames)


def test_renderer_is_deterministic(renderer):
    from avcall.pipelines.face.lip_model import LipModel

    lips = LipModel.load().mean.astype(np.float64).copy()
    lips[LOWER, 1] += 0.12  # an open mouth: the interior, teeth and tongue drawn
    again = PortraitRenderer(size=128)
    for t in (0.0, 0.52, 1.96):
        a, b = renderer.render(lips, t), again.render(lips, t)
        assert a.dtype == np.uint8 and np.array_equal(a, b)
