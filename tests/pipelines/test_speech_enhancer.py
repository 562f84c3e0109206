"""The enhancer at run time: hop by hop == whole clip, alignment, click-free model switching, the live stage
(one frame out per hop in, same pts, pass-through when behind) and `avcall process --enhance`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from avcall.app.process import ProcessConfig, run_process
from avcall.export.onnx_export import export_onnx
from avcall.models.avse.features import HOP, LIP_DIM, N_FREQ, lip_stream, log_power, stft
from avcall.models.avse.model import Enhancer
from avcall.models.avse.runtime_enhancer import DELAY, StreamingEnhancer, lip_vector
from avcall.models.data.example import LipTrack
from avcall.pipelines.clock import SessionClock
from avcall.pipelines.frames import AudioFrame, LipFeatures, VideoFrame
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.sources.synthetic import SyntheticSource, synthetic_frames
from avcall.pipelines.stages.speech_enhancer import SpeechEnhancer
from tests.conftest import run_cli, write_media

RATE = 16_000


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Random-init AV and AO models exported under their shipped names (different seeds: different masks)."""
    folder = tmp_path_factory.mktemp("weights")
    for seed, use_lips, name in ((0, True, "avse_av.onnx"), (1, False, "avse_ao.onnx")):
        torch.manual_seed(seed)
        export_onnx(Enhancer(use_lips=use_lips).eval(), folder / name)
    return folder


@pytest.fixture(scope="module")
def enhancer(weights) -> StreamingEnhancer:
    return StreamingEnhancer(weights / "avse_av.onnx", weights / "avse_ao.onnx")


@pytest.fixture(scope="module")
def speech(shared_data) -> np.ndarray:
    audio, rate = sf.read(str(shared_data / "speech" / "pyroomacoustics_cmu_arctic_us_aew_a0001.wav"),
                          dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    return (resample_poly(audio, RATE, rate) if rate != RATE else audio).astype(np.float32)[: 3 * RATE]


def lip_track(seconds: float, fps: float = 25.0, gone: tuple[float, float] = (1.0, 1.6)) -> LipTrack:
    """A mouth that opens and closes, the face lost between `gone`."""
    n = int(seconds * fps)
    t = np.arange(n) / fps
    rng = np.random.default_rng(0)
    lips = (0.05 * rng.standard_normal((n, 40, 2)) + 0.02 * np.sin(2 * np.pi * 3 * t)[:, None, None]).astype(np.float32)
    present = ~((t >= gone[0]) & (t < gone[1]))
    return LipTrack(lips=lips, opening=(0.1 + 0.05 * np.sin(2 * np.pi * 3 * t)).astype(np.float32),
                    width=np.full(n, 1.1, np.float32), face_present=present, confidence=present.astype(np.float32),
                    fps=fps)


class Constant:
    """A stand-in onnxruntime session that returns a constant mask and records the log power it was fed."""

    def __init__(self, value: float, use_lips: bool) -> None:
        self.value, self.use_lips, self.fed = value, use_lips, []

    def get_inputs(self):
        inputs = [("logpow", ["batch", "frames", N_FREQ]), ("state_in", [2, "batch", 8])]
        inputs += [("lips", ["batch", "frames", LIP_DIM])] if self.use_lips else []
        return [SimpleNamespace(name=name, shape=shape) for name, shape in inputs]

    def get_modelmeta(self):
        return SimpleNamespace(custom_metadata_map={})  # no lip_mean: the shipped lip model's is used

    def run(self, names, feeds):
        self.fed.append(feeds["logpow"].copy())
        return [np.full((1, 1, N_FREQ), self.value, np.float32), feeds["state_in"]]


# --------------------------------------------------------------------------------------------- the enhancer
def test_hop_by_hop_equals_enhance_clip(enhancer, speech):
    track = lip_track(len(speech) / RATE + 0.5)
    offset = 0.03
    clip = enhancer.enhance_clip(speech, track, offset)
    assert clip.shape == speech.shape and np.all(np.isfinite(clip))
    hops = -(-len(speech) // HOP) + 1
    stream = lip_stream(track.lips, track.opening, track.width, track.face_present, track.fps, hops, offset=offset,
                        mean_shape=enhancer.lip_mean)
    x = np.zeros(hops * HOP, np.float32)
    x[:len(speech)] = speech
    enhancer.reset()
    out = [enhancer.process_hop(x[k * HOP:(k + 1) * HOP], stream[k] if stream[k, 82] else None) for k in range(hops)]
    streamed = np.concatenate(out)[DELAY:DELAY + len(speech)]
    np.testing.assert_array_equal(streamed, clip)
    assert np.abs(clip - enhancer.enhance_clip(speech, None, 0.0)).max() > 1e-4  # the lips do count


@pytest.mark.parametrize("models", ["av+ao", "av", "ao"])
def test_unit_mask_gives_the_input_back_aligned(enhancer, models):
    x = (0.3 * np.random.default_rng(1).standard_normal(RATE + 77)).astype(np.float32)
    av = Constant(1.0, True) if "av" in models else None
    ao = Constant(1.0, False) if models != "av" else None
    y = StreamingEnhancer.from_sessions(av, ao).enhance_clip(x, lip_track(2.0), 0.0)
    assert np.abs(y - x).max() <= 1e-4  # same samples, same place: the one-hop lag is taken off
    # what the models saw is what training computes (features.stft framing, log power)
    fed = np.concatenate((av or ao).fed, axis=1)[0, :len(x) // HOP]
    np.testing.assert_allclose(fed, log_power(stft(x)), atol=1e-5)


def test_passthrough_is_the_input_one_hop_later(enhancer):
    x = (0.3 * np.random.default_rng(2).standard_normal(20 * HOP)).astype(np.float32)
    enhancer.reset()
    y = np.concatenate([enhancer.passthrough_hop(x[i:i + HOP]) for i in range(0, len(x), HOP)])
    enhancer.reset()
    assert np.abs(y[DELAY:] - x[:-DELAY]).max() <= 1e-6


def hop_gain(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per hop, output RMS over input RMS (the output's one-hop lag taken off)."""
    y, x = y[DELAY:], x[:-DELAY]
    n = len(y) // HOP
    return np.sqrt((y[:n * HOP].reshape(n, HOP) ** 2).mean(1) / (x[:n * HOP].reshape(n, HOP) ** 2).mean(1))


@pytest.mark.parametrize("change", ["face goes", "face comes"])
def test_switching_models_fades_without_a_click(enhancer, change):
    t = np.arange(RATE) / RATE
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    face = np.zeros(LIP_DIM, np.float32)
    face[82] = 1.0
    switch = 50  # hop where the face goes (or comes)
    rows = [face if (k < switch) == (change == "face goes") else None for k in range(len(x) // HOP)]

    def run(crossfade_s: float) -> np.ndarray:
        enh = StreamingEnhancer.from_sessions(Constant(1.0, True), Constant(0.2, False), crossfade_s=crossfade_s)
        return np.concatenate([enh.process_hop(x[k * HOP:(k + 1) * HOP], rows[k]) for k in range(len(rows))])

    y = run(0.1)
    gain = hop_gain(y, x)
    before, after = (1.0, 0.2) if change == "face goes" else (0.2, 1.0)
    assert gain[switch - 5] == pytest.approx(before, abs=1e-3)
    assert gain[switch + 12] == pytest.approx(after, abs=1e-3)
    assert np.abs(np.diff(gain)).max() <= 0.09  # 100 ms: ten hops of at most 0.08 each
    steady = np.abs(np.diff(y[:(switch - 2) * HOP] if change == "face goes" else y[(switch + 14) * HOP:])).max()
    around = np.abs(np.diff(y[(switch - 2) * HOP:(switch + 14) * HOP])).max()
    assert around <= steady + 1e-6  # no sample jump across the switch larger than where the louder model runs
    assert np.abs(np.diff(hop_gain(run(0.0), x))).max() >= 0.3  # without the fade: all within two hops


def test_real_models_switch_without_a_jump(enhancer, speech):
    track = lip_track(len(speech) / RATE + 0.5, gone=(1.5, 9.0))
    y = enhancer.enhance_clip(speech, track, 0.0)
    k = int(1.5 * RATE)
    jumps = np.abs(np.diff(y))
    around = jumps[k - 1600:k + 1600].max()  # 100 ms either side of the face going
    assert around <= max(jumps[:k - 1600].max(), jumps[k + 1600:].max())


def test_lip_vector_is_the_lip_stream_row(enhancer):
    track = lip_track(1.0)
    stream = lip_stream(track.lips, track.opening, track.width, track.face_present, track.fps, 100,
                        mean_shape=enhancer.lip_mean)
    i = 10  # video frame 10 (0.4 s) is what audio hop 39 (ending at 0.4 s) sees
    lf = LipFeatures(pts=i / 25, present=True, confidence=1.0, shape=track.lips[i], opening=float(track.opening[i]),
                     width=float(track.width[i]))
    np.testing.assert_allclose(lip_vector(lf, enhancer.lip_mean), stream[39], atol=1e-5)
    assert lip_vector(LipFeatures(pts=0.0, present=False, confidence=0.0), enhancer.lip_mean) is None


# --------------------------------------------------------------------------------------------- the stage
def run_pipeline(stage: SpeechEnhancer, source, live: bool = False) -> list:
    out = []
    telemetry = asyncio.run(Pipeline([source], [stage], live=live, on_output=out.append).run())
    return out, telemetry[stage.name]


def test_stage_emits_one_enhanced_frame_per_hop_with_its_pts(weights, enhancer):
    source = SyntheticSource(1.0, events=(0.3, 0.7))
    inputs = [f for f in synthetic_frames(1.0, events=(0.3, 0.7)) if isinstance(f, AudioFrame)]
    out, tel = run_pipeline(SpeechEnhancer(av_path=weights / "avse_av.onnx", ao_path=weights / "avse_ao.onnx"),
                            source)
    audio = [f for f in out if isinstance(f, AudioFrame)]
    assert [f.pts for f in audio] == [f.pts for f in inputs]
    assert all(len(a.samples) == len(b.samples) for a, b in zip(audio, inputs))
    assert sum(isinstance(f, VideoFrame) for f in out) == 25  # what the stage does not take goes round it
    enhancer.reset()
    expected = [enhancer.process_hop(f.samples) for f in inputs]
    enhancer.reset()
    np.testing.assert_array_equal(np.concatenate([f.samples for f in audio]), np.concatenate(expected))
    assert tel["enhanced"] == len(inputs) and tel["passed_through"] == 0 and tel["face_hops"] == 0
    assert tel["algorithmic_latency_ms"] == 20 and tel["output_delay_ms"] == 10
    assert tel["latency_ms"]["max"] > 0


def test_stage_holds_audio_for_its_lips_offline(enhancer):
    async def scenario():
        stage = SpeechEnhancer(enhancer, wait_for_lips=True)
        await stage.start()
        got = []
        for k in range(8):  # 80 ms of audio before any video
            got += await stage.process(AudioFrame(pts=k * 0.01, samples=np.zeros(HOP, np.float32)))
        assert got == []
        lips = LipFeatures(pts=0.04, present=True, confidence=1.0, shape=np.zeros((40, 2), np.float32), width=1.0)
        got = await stage.process(lips)
        assert got[0] is lips and [f.pts for f in got[1:]] == pytest.approx([0.0, 0.01, 0.02, 0.03])
        got = await stage.flush()
        assert [f.pts for f in got] == pytest.approx([0.04, 0.05, 0.06, 0.07])
        stage.shutdown_worker()
        return stage.telemetry

    tel = asyncio.run(scenario())
    assert tel.enhanced == 8 and tel.face_hops == 5  # the hops ending at 0.04 s and later see the face


def test_stage_passes_audio_through_when_behind(enhancer):
    inputs = [f for f in synthetic_frames(0.5) if isinstance(f, AudioFrame)]
    clock = SessionClock(start=time.monotonic() - 100.0)  # every hop arrives 100 s after its capture
    out, tel = run_pipeline(SpeechEnhancer(enhancer, clock=clock), SyntheticSource(0.5), live=True)
    audio = [f for f in out if isinstance(f, AudioFrame)]
    assert [f.pts for f in audio] == [f.pts for f in inputs]
    assert tel["passed_through"] == len(inputs) and tel["enhanced"] == 0
    x, y = np.concatenate([f.samples for f in inputs]), np.concatenate([f.samples for f in audio])
    assert np.abs(y[DELAY:] - x[:-DELAY]).max() <= 1e-6  # unprocessed, lined up like enhanced audio


def test_stage_on_time_live_enhances(enhancer):
    clock = SessionClock()
    _, tel = run_pipeline(SpeechEnhancer(enhancer, clock=clock, max_behind_hops=50),
                          SyntheticSource(0.3, clock=clock, realtime=True), live=True)
    assert tel["passed_through"] == 0 and tel["enhanced"] == 30


# --------------------------------------------------------------------------------------------- the CLI
def test_process_enhance_without_weights_is_a_clean_error(tmp_path, monkeypatch):
    clip = write_media(tmp_path / "in.mp4", seconds=0.5)
    monkeypatch.setenv("AVCALL_WEIGHTS_DIR", str(tmp_path / "weights"))
    result = run_cli("process", str(clip), "-o", str(tmp_path / "out"), "--enhance", timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "avse_ao.onnx is missing" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_process_enhance_writes_enhanced_audio(tmp_path, monkeypatch, weights):
    clip = write_media(tmp_path / "in.mp4", seconds=1.0, size=(64, 48))
    monkeypatch.setenv("AVCALL_WEIGHTS_DIR", str(weights))
    result = run_process(ProcessConfig(input=clip, outdir=tmp_path / "out", enhance=True), progress=False)
    enhanced, rate = sf.read(str(tmp_path / "out" / "enhanced.wav"), dtype="float32")
    assert rate == RATE and abs(len(enhanced) - RATE) <= HOP and np.all(np.isfinite(enhanced))
    assert result.telemetry["speech_enhancer"]["enhanced"] >= 99
    with av.open(str(tmp_path / "out" / "annotated.mp4")) as container:
        assert len(container.streams.audio) == 1 and len(container.streams.video) == 1
