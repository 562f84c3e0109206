"""The SpeechEnhancer stage over a suppressor: one frame out per frame in with its pts; live the suppressor's
delay is kept, offline it is taken off (outputs line up with the input); a hop that comes late passes
through dry, in step; "off" and back fade without a jump; a backend switch crossfades; the voice never
clips. And `avcall process --enhance` on a loud real clip: 16-bit PCM, under full scale, lined up."""

from __future__ import annotations

import asyncio
import time

import av
import numpy as np
import pytest
import soundfile as sf

from avcall.app.process import ProcessConfig, run_process
from avcall.pipelines.clock import SessionClock
from avcall.pipelines.frames import HOP_SAMPLES, AudioFrame, VideoFrame
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.sources.synthetic import SyntheticSource, synthetic_frames
from avcall.pipelines.stages.speech_enhancer import FADE, SpeechEnhancer
from avcall.pipelines.suppressors import DEFAULT
from avcall.pipelines.features import enhancers
from avcall.pipelines.sources.file import FileSource
from avcall.pipelines.suppressors.base import Suppressor
from tests.conftest import read_all

RATE = 16_000


class Delay(Suppressor):
    """A stand-in suppressor: the input times `gain`, `delay` samples later."""

    def __init__(self, delay: int = 480, gain: float = 0.5, name: str = "stub") -> None:
        self.delay, self.gain, self.name = delay, gain, name
        self.resets = 0
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(self.delay, np.float32)
        self.resets += 1

    def _process(self, hop):
        buf = np.concatenate([self._buf, hop])
        self._buf = buf[HOP_SAMPLES:]
        return self.gain * buf[:HOP_SAMPLES]


def run(stage, source, live: bool = False):
    out = []
    telemetry = asyncio.run(Pipeline([source], [stage], live=live, on_output=out.append).run())
    return out, telemetry[stage.name]


def audio_of(frames) -> np.ndarray:
    return np.concatenate([f.samples for f in frames if isinstance(f, AudioFrame)])


def test_live_one_frame_per_frame_with_its_pts_and_the_delay_kept():
    inputs = [f for f in synthetic_frames(1.0) if isinstance(f, AudioFrame)]
    out, tel = run(SpeechEnhancer(Delay()), SyntheticSource(1.0))
    audio = [f for f in out if isinstance(f, AudioFrame)]
    assert [f.pts for f in audio] == [f.pts for f in inputs]
    assert all(len(a.samples) == len(b.samples) for a, b in zip(audio, inputs))
    assert sum(isinstance(f, VideoFrame) for f in out) == 25  # what the stage does not take goes round it
    x, y = audio_of(inputs), audio_of(audio)
    np.testing.assert_allclose(y[480:], 0.5 * x[:-480], atol=1e-6)  # the suppressor's output, from the start
    assert tel["enhanced"] == len(inputs) and tel["passed_through"] == 0
    assert tel["output_delay_ms"] == 30 and tel["algorithmic_latency_ms"] == 40 and tel["backend"] == "stub"


def test_offline_the_delay_is_taken_off():
    inputs = [f for f in synthetic_frames(1.0) if isinstance(f, AudioFrame)]
    out, tel = run(SpeechEnhancer(Delay(), compensate_delay=True), SyntheticSource(1.0))
    audio = [f for f in out if isinstance(f, AudioFrame)]
    assert [f.pts for f in audio] == [f.pts for f in inputs]  # every frame, the last ones brought out at the end
    np.testing.assert_allclose(audio_of(audio), 0.5 * audio_of(inputs), atol=1e-6)
    assert tel["output_delay_ms"] == 0


def test_late_hops_pass_through_dry_in_step_and_the_suppressor_resumes():
    inputs = [f for f in synthetic_frames(0.5) if isinstance(f, AudioFrame)]
    clock = SessionClock(start=time.monotonic() - 100.0)  # every hop arrives 100 s after its capture
    out, tel = run(SpeechEnhancer(Delay(), clock=clock), SyntheticSource(0.5), live=True)
    x, y = audio_of(inputs), audio_of(out)
    assert tel["passed_through"] == len(inputs)
    # from the first late hop the voice fades to dry (the input, as delayed as the suppressor's output)
    ref = np.concatenate([np.zeros(480, np.float32), x[:-480]])
    np.testing.assert_allclose(y[FADE:], ref[FADE:], atol=1e-6)


def toggled(stage: SpeechEnhancer, x: np.ndarray, modes: dict[int, str]) -> np.ndarray:
    """x hop by hop through the started stage, `mode` set at the given hops."""
    async def go():
        await stage.start()
        out = []
        for k in range(len(x) // HOP_SAMPLES):
            if k in modes:
                stage.mode = modes[k]
            out += await stage.process(AudioFrame(pts=k / 100, samples=x[k * HOP_SAMPLES:(k + 1) * HOP_SAMPLES]))
        stage.shutdown_worker()
        return audio_of(out)

    return asyncio.run(go())


def test_off_and_back_fade_without_a_jump():
    x = (0.5 * np.sin(2 * np.pi * 220 * np.arange(RATE) / RATE)).astype(np.float32)
    stage = SpeechEnhancer(Delay())
    y = toggled(stage, x, {30: "off", 60: "stub"})
    ref = np.zeros_like(x)
    ref[480:] = x[:-480]  # the dry voice, as delayed as the suppressor's
    gain = np.abs(y[480:]).reshape(-1, 80).max(1) / np.maximum(np.abs(ref[480:]).reshape(-1, 80).max(1), 1e-6)
    at = lambda hop: gain[(hop * HOP_SAMPLES - 480) // 80]  # noqa: E731 - the gain around input hop `hop`
    assert at(10) == pytest.approx(0.5, abs=0.02) and at(50) == pytest.approx(1.0, abs=0.02)  # wet, then dry
    assert gain[-1] == pytest.approx(0.5, abs=0.02)  # and wet again once the restarted suppressor is valid
    assert np.abs(np.diff(gain)).max() < 0.2  # the 0.5 change spread over FADE samples (4 blocks), never a step
    assert stage.chain.suppressor.resets >= 2  # off, it stopped running; back, it started afresh


def test_a_backend_switch_crossfades_over_a_hop():
    x = (0.5 * np.sin(2 * np.pi * 220 * np.arange(RATE // 2) / RATE)).astype(np.float32)
    stage = SpeechEnhancer(Delay(480, 0.5))
    import avcall.pipelines.stages.speech_enhancer as module

    opened = []
    real = module.open_suppressor
    module.open_suppressor = lambda name: opened.append(name) or Delay(352, 0.25, name)
    try:
        y = toggled(stage, x, {20: "other"})
    finally:
        module.open_suppressor = real
    assert opened == ["other"] and stage.telemetry.backend == "other"
    assert np.abs(np.diff(y)).max() < 0.05  # a 220 Hz tone at 0.5 moves at most 0.022 a sample: no click


def test_the_voice_never_clips():
    x = (1.6 * np.sin(2 * np.pi * 200 * np.arange(RATE // 2) / RATE)).astype(np.float32)
    y = toggled(SpeechEnhancer(Delay(480, 1.0)), x, {})
    assert np.abs(y).max() <= 0.8913  # -1 dBFS (the limiter's own test is in test_suppressors.py)


@pytest.mark.skipif(DEFAULT not in enhancers(), reason=f"{DEFAULT} does not ship on this machine")
def test_process_enhance_on_a_loud_real_clip_is_pcm16_under_full_scale_and_lined_up(tmp_path, shared_data):
    clip = shared_data / "talking_faces" / "GRID_lbax4n.mpg"  # loud: the old enhancer peaked at 1.67 on it
    result = run_process(ProcessConfig(input=clip, outdir=tmp_path / "out", enhance=DEFAULT), progress=False)
    wav = tmp_path / "out" / "enhanced.wav"
    assert sf.info(str(wav)).subtype == "PCM_16"
    y, rate = sf.read(str(wav), dtype="float32")
    x = audio_of(asyncio.run(read_all(FileSource(clip, video=False))))
    assert rate == RATE and len(y) == len(x)
    assert np.abs(y).max() < 0.9  # the limiter's ceiling (-1 dBFS): nothing at full scale
    corr = np.correlate(y[:RATE * 2], x[:RATE * 2], "full")[RATE * 2 - 1 - 400:RATE * 2 - 1 + 400]
    assert int(np.argmax(corr)) - 400 == 0  # no lag: the suppressor's delay was taken off
    assert result.telemetry["speech_enhancer"]["backend"] == DEFAULT
    with av.open(str(tmp_path / "out" / "annotated.mp4")) as container:
        assert len(container.streams.audio) == 1
