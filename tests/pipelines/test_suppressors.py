"""The noise suppressors behind one streaming interface: for every backend, hop by hop equals the whole clip,
the declared delay is the measured one, real noise is reduced; their weights are checked (a missing or
changed file is one line, exit status 2, from the CLI); the limiter never lets a sample past its ceiling."""

from __future__ import annotations

import os
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from avcall.app.eval.data import scale_to_snr
from avcall.app.eval.metrics import si_sdr
from avcall.pipelines.runtime import manifest, session_count
from avcall.pipelines.audio import Limiter
from avcall.pipelines.frames import HOP_SAMPLES
from avcall.pipelines.suppressors import BACKENDS, DEFAULT, open_suppressor
from avcall.pipelines.features import enhancers
from avcall.pipelines.suppressors.base import Reblocker
from tests.conftest import run_cli, write_media

RATE = 16_000
SHIPPED = enhancers()


def needs(name: str):
    return pytest.mark.skipif(name not in SHIPPED, reason=f"{name} does not ship on this machine")


@pytest.fixture(scope="module")
def speech(arctic_speech) -> np.ndarray:
    return arctic_speech


@pytest.fixture(scope="module")
def noisy(speech, shared_data) -> np.ndarray:
    """The utterance in real cafe noise at 0 dB."""
    path = sorted((shared_data / "noise").glob("*cafe*"))[0]
    noise, rate = sf.read(str(path), dtype="float32", always_2d=True)
    noise = resample_poly(noise.mean(axis=1), RATE, rate).astype(np.float32)
    noise = np.resize(noise, len(speech))
    return speech + scale_to_snr(speech, noise, 0.0)


@pytest.mark.parametrize("name", list(BACKENDS))
def test_hop_by_hop_equals_the_whole_clip_and_the_delay_is_as_declared(name, speech):
    if name not in SHIPPED:
        pytest.skip(f"{name} does not ship on this machine")
    sup = open_suppressor(name)
    clip = sup.enhance_clip(speech)
    assert clip.shape == speech.shape and np.all(np.isfinite(clip))
    sup.reset()
    x = np.concatenate([speech, np.zeros(-(-sup.delay // HOP_SAMPLES) * HOP_SAMPLES + HOP_SAMPLES, np.float32)])
    x = x[: len(x) // HOP_SAMPLES * HOP_SAMPLES]
    streamed = np.concatenate([sup.push(x[i:i + HOP_SAMPLES]) for i in range(0, len(x), HOP_SAMPLES)])
    np.testing.assert_array_equal(streamed[sup.delay:sup.delay + len(speech)], clip)
    # the delay it declares is where its output lines up with its input (cross-correlation on speech)
    n = len(speech)
    corr = np.correlate(streamed[:n + 1000], speech, "full")[n - 1:n - 1 + 1000]
    assert int(np.argmax(corr)) == sup.delay
    assert sup.latency_ms == pytest.approx(1000 * (sup.delay + HOP_SAMPLES) / RATE)


@pytest.mark.parametrize("name", ["dtln", "dfn3", "rnnoise"])
def test_real_noise_is_reduced(name, speech, noisy):
    if name not in SHIPPED:
        pytest.skip(f"{name} does not ship on this machine")
    out = open_suppressor(name).enhance_clip(noisy)
    assert si_sdr(speech, out) - si_sdr(speech, noisy) > 3.0  # every one of them does better than +3 dB here


@needs(DEFAULT)
def test_the_default_is_within_the_latency_budget():
    assert open_suppressor(DEFAULT).latency_ms <= 40.0


@needs("dtln")
def test_streams_share_one_session_per_model():
    open_suppressor("dtln")
    before = session_count()
    streams = [open_suppressor("dtln") for _ in range(3)]
    assert session_count() == before  # three more streams, no new session
    x = (0.1 * np.random.default_rng(0).standard_normal(20 * HOP_SAMPLES)).astype(np.float32)
    outs = [np.concatenate([s.push(x[i:i + HOP_SAMPLES]) for i in range(0, len(x), HOP_SAMPLES)]) for s in streams]
    np.testing.assert_array_equal(outs[0], outs[2])  # each stream has its own state


def test_one_registry_decides_what_ships_for_every_command(monkeypatch, tmp_path):
    from avcall.app.options import enhancer_choices
    from avcall.app.serve import Server, ServeConfig

    monkeypatch.setenv("AVCALL_WEIGHTS_DIR", str(tmp_path))  # none of our own ONNX files: avcall-ao is gone
    shipped_here = enhancers()
    assert "avcall-ao" not in shipped_here and shipped_here == [n for n in SHIPPED if n != "avcall-ao"]
    server = Server(ServeConfig(captions=False))
    server.load_models()
    assert server.models.enhancers == ("off", *shipped_here)  # the page offers exactly that
    assert [n for n in BACKENDS if f"{n} (" in enhancer_choices()] == shipped_here  # and so do the commands


def test_reblocker_keeps_a_constant_delay():
    rb = Reblocker(128)
    assert rb.delay == 96  # the least that always has a 10 ms hop ready from 8 ms blocks
    x = np.arange(40 * HOP_SAMPLES, dtype=np.float32)
    y = np.concatenate([rb.push(x[i:i + HOP_SAMPLES], lambda b: b) for i in range(0, len(x), HOP_SAMPLES)])
    np.testing.assert_array_equal(y[96:], x[:-96])


def test_unknown_backend_is_one_line():
    from avcall.pipelines.errors import InputError

    with pytest.raises(InputError, match="unknown enhancer 'nope'"):
        open_suppressor("nope")


# --------------------------------------------------------------------------------------------- the weights
def fake_distribution(root: Path, name: str, how: str) -> Path:
    """A copy of the installed distribution behind backend `name` under `root` (which goes first on
    PYTHONPATH, so it is the one found), with one of its weight files missing or changed."""
    package = manifest()["packages"][name]
    dist = metadata.distribution(package["distribution"])
    info = root / f"{package['distribution'].replace('-', '_')}-{package['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package['distribution']}\n"
                                   f"Version: {package['version']}\n")
    for rel in package["files"]:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dist.locate_file(rel), target)
    victim = root / next(iter(package["files"]))
    if how == "missing":
        victim.unlink()
    else:
        data = victim.read_bytes()
        victim.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    return victim


@pytest.mark.parametrize("how", ["missing", "damaged"])
@pytest.mark.parametrize("name", ["dtln", "dfn3", "rnnoise"])
def test_a_missing_or_damaged_weight_file_is_one_line_exit_2(tmp_path, name, how):
    if name not in SHIPPED:
        pytest.skip(f"{name} does not ship on this machine")
    victim = fake_distribution(tmp_path / "site", name, how)
    clip = write_media(tmp_path / "clip.mp4", seconds=0.4, size=None)
    env = {"PYTHONPATH": str(tmp_path / "site") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = run_cli("process", str(clip), "-o", str(tmp_path / "out"), "-q", "--enhance", name, env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(victim) in lines[0]
    assert ("is missing" if how == "missing" else "sha256 differs") in lines[0]
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------- the limiter
def test_limiter_never_exceeds_its_ceiling_and_leaves_quiet_audio_alone():
    rng = np.random.default_rng(3)
    loud = (0.7 * rng.standard_normal(RATE)).astype(np.float32)
    lim = Limiter()
    y = np.concatenate([lim(loud[i:i + HOP_SAMPLES]) for i in range(0, len(loud), HOP_SAMPLES)])
    assert np.abs(y).max() <= lim.ceiling + 1e-7 and np.all(np.sign(y) == np.sign(loud))
    quiet = 0.2 * loud / np.abs(loud).max()
    lim.reset()
    np.testing.assert_array_equal(np.concatenate([lim(quiet[i:i + HOP_SAMPLES])
                                                  for i in range(0, len(quiet), HOP_SAMPLES)]), quiet)
    # after a peak the gain climbs back to one within the release time, without a step
    burst = np.concatenate([np.full(HOP_SAMPLES, 1.5, np.float32), np.full(2 * RATE // 10, 0.5, np.float32)])
    lim.reset()
    y = np.concatenate([lim(burst[i:i + HOP_SAMPLES]) for i in range(0, len(burst), HOP_SAMPLES)])
    assert y[-1] == pytest.approx(0.5) and np.abs(np.diff(y[HOP_SAMPLES:])).max() < 0.01
