"""avcall's own enhancer at run time (the avcall-ao backend, and the lip-guided model under evaluation): hop
by hop == whole clip, alignment, click-free model switching. The stage: test_enhancer_stage.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from avcall.models.avse.export import export_onnx
from avcall.pipelines.nets.enhancer_features import HOP, LIP_DIM, N_FREQ, lip_stream, log_power, stft
from avcall.models.avse.model import Enhancer
from avcall.pipelines.nets.enhancer import DELAY, StreamingEnhancer, lip_vector
from avcall.pipelines.face.lip_track import LipTrack
from avcall.pipelines.frames import LipFeatures

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
def speech(arctic_speech) -> np.ndarray:
    return arctic_speech


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
