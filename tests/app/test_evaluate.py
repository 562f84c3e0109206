"""`avcall eval enhance`: the metrics on known signals, the conditions, the RNNoise wrapper's alignment, the
method registry and the command line."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
from scipy.signal import correlate

from avcall.app.eval import baselines, data, enhance, metrics
from avcall.models.data.shared_data import talking_face_clips
from avcall.pipelines.errors import InputError
from avcall.pipelines.face.lip_track import LipTrack
from tests.conftest import run_cli

SPEECH = "speech/DeepSpeech_arctic_a0024.wav"


def energy_db(x: np.ndarray) -> float:
    return 10 * np.log10(float(np.dot(x.astype(np.float64), x.astype(np.float64))))


def white(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


# ------------------------------------------------------------------------------------------ SI-SDR
def test_si_sdr_of_the_signal_itself_is_very_high():
    s = np.sin(np.arange(16000) * 0.05) + 0.3 * white(16000)
    assert metrics.si_sdr(s, s) > 100
    assert metrics.si_sdr(s, s.astype(np.float32)) > 60  # float32 rounding alone is ~ -150 dB of error


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0])
def test_si_sdr_of_a_known_mix(snr):
    rng = np.random.default_rng(1)
    t = np.arange(32000)
    s = np.sin(t * 0.031) * (1 + 0.5 * np.sin(t * 0.0007)) + 0.1 * rng.standard_normal(32000)
    s -= s.mean()
    n = rng.standard_normal(32000)
    n -= n.mean()
    n -= np.dot(n, s) / np.dot(s, s) * s  # orthogonal to s: the projection is s itself, SI-SDR is the SNR
    n *= np.sqrt(np.dot(s, s) / np.dot(n, n) / 10 ** (snr / 10))
    assert abs(metrics.si_sdr(s, s + n) - snr) < 1e-6
    # plain white noise, not orthogonalised: still within 0.1 dB on two seconds
    m = rng.standard_normal(32000)
    m *= np.sqrt(np.dot(s, s) / np.dot(m, m) / 10 ** (snr / 10))
    assert abs(metrics.si_sdr(s, s + m) - snr) < 0.1


def test_si_sdr_is_scale_and_offset_invariant():
    s = np.sin(np.arange(16000) * 0.02)
    est = s + 0.3 * white(16000, 2)
    base = metrics.si_sdr(s, est)
    assert metrics.si_sdr(s, 3.7 * est) == pytest.approx(base, abs=1e-9)
    assert metrics.si_sdr(0.01 * s, est) == pytest.approx(base, abs=1e-9)
    assert metrics.si_sdr(s, est + 0.25) == pytest.approx(base, abs=1e-9)  # zero-mean first
    assert metrics.si_sdr(s, -est) == pytest.approx(base, abs=1e-9)  # the scale may be negative too
    assert np.isfinite(metrics.si_sdr(s, s)) and np.isfinite(metrics.si_sdr(s, np.zeros_like(s)))
    with pytest.raises(ValueError):
        metrics.si_sdr(s, est[:-1])


def test_si_sdr_improvement_of_the_identity_is_exactly_zero():
    s, x = white(8000, 3), white(8000, 4)
    y = baselines.Identity().enhance(x.astype(np.float32), None, 0.0)
    assert metrics.si_sdr(s, y) - metrics.si_sdr(s, x.astype(np.float32)) == 0.0


# ------------------------------------------------------------------------------------------ data
def test_noises_and_pairs_are_told_apart(shared_data):
    noises = {p.name for p in data.noise_files(shared_data)}
    assert noises == {"EMGSE_Car_Noise_Idle_Noise_60_mph.wav", "EMGSE_Street_Noise.wav",
                      "EMGSE_babble_two_female_english.wav", "noisereduce_cafe_short.wav",
                      "pyroomacoustics_doing_the_dishes.wav", "pyroomacoustics_exercise_bike.wav",
                      "speechbrain_noise1.wav"}
    pairs = {(noisy.name, clean.name) for _, noisy, clean in data.noise_pairs(shared_data)}
    assert pairs == {(f"denoiser_VBD_noisy_p287_00{i}.wav", f"denoiser_VBD_clean_p287_00{i}.wav") for i in (1, 2, 3)} \
        | {("pesq_speech_bab_0dB.wav", "pesq_speech.wav")}
    assert len(talking_face_clips(shared_data)) == 17


def fake_measure(shared_data: Path):
    """Stands in for the tracker (slow): a real utterance as the 'clip audio', with a lip track."""
    audio = data.load_audio(shared_data / "speech" / "pyroomacoustics_cmu_arctic_us_aew_a0001.wav")
    frames = int(len(audio) / data.SAMPLE_RATE * 25)
    track = LipTrack(np.zeros((frames, 40, 2), np.float32), np.zeros(frames, np.float32),
                     np.zeros(frames, np.float32), np.ones(frames, bool), np.ones(frames, np.float32), 25.0)
    return lambda path: SimpleNamespace(audio=audio, track=track, audio_offset=0.04)


def test_conditions_are_deterministic_and_at_the_asked_snr(shared_data):
    measure = fake_measure(shared_data)
    first = list(enhance.examples(shared_data, seed=0, clips=3, measure=measure))
    again = list(enhance.examples(shared_data, seed=0, clips=3, measure=measure))
    other = list(enhance.examples(shared_data, seed=7, clips=3, measure=measure))
    assert [e.condition for e in first] == ["talker0dB", "noise0dB", "noise5dB"] * 3 + ["pair"] * 4
    for a, b in zip(first, again):
        assert (a.condition, a.clip, a.source) == (b.condition, b.clip, b.source)
        assert np.array_equal(a.noisy, b.noisy) and np.array_equal(a.clean, b.clean)
    assert any(not np.array_equal(a.noisy, c.noisy) for a, c in zip(first, other) if a.condition != "pair")
    speech = {p.name for p in data.speech_files(shared_data)}
    noises = {p.name for p in data.noise_files(shared_data)}
    asked = {"talker0dB": 0.0, "noise0dB": 0.0, "noise5dB": 5.0}
    for e in first:
        assert len(e.noisy) == len(e.clean) and e.noisy.dtype == np.float32
        if e.condition == "pair":
            assert e.lips is None
            continue
        assert e.lips is not None and e.audio_offset == 0.04
        assert np.abs(e.noisy).max() <= enhance.PEAK + 1e-6
        snr = energy_db(e.clean) - energy_db(e.noisy.astype(np.float64) - e.clean)
        assert abs(snr - asked[e.condition]) < 0.1, (e.condition, e.clip, snr)
        added = e.source.split("@")[0]
        assert added in (speech if e.condition == "talker0dB" else noises)
    # a clip's mixtures do not depend on which other clips are evaluated with it
    one = list(enhance.examples(shared_data, seed=0, clips=1, measure=measure))
    assert np.array_equal(one[0].noisy, first[0].noisy)


# ------------------------------------------------------------------------------------------ RNNoise
def test_rnnoise_is_delay_aligned_and_removes_noise(shared_data):
    speech = data.load_audio(shared_data / SPEECH)
    try:
        rnnoise = baselines.SuppressorMethod("rnnoise", "rnnoise")
    except baselines.MethodUnavailable as err:
        pytest.skip(str(err))
    out = rnnoise.enhance(speech, None, 0.0)
    assert len(out) == len(speech) and out.dtype == np.float32
    c = correlate(out.astype(np.float64), speech.astype(np.float64), mode="full", method="fft")
    lag = int(np.argmax(c)) - (len(speech) - 1)
    assert abs(lag) <= data.SAMPLE_RATE // 1000, f"rnnoise output lags its input by {lag} samples"
    bike = data.load_audio(shared_data / "noise" / "pyroomacoustics_exercise_bike.wav")
    noise = data.fit_length(bike, len(speech), 16000)
    noisy = speech + data.scale_to_snr(speech, noise, 0.0)
    before, after = metrics.si_sdr(speech, noisy), metrics.si_sdr(speech, rnnoise.enhance(noisy, None, 0.0))
    assert after > before + 2, (before, after)


# ------------------------------------------------------------------------------------------ registry
class Halver:
    """A registered method that reads lips: halves the input (so its SI-SDR improvement is ~0)."""

    name = "halver"
    needs_lips = True
    seen: ClassVar[list] = []

    def enhance(self, audio, lips, audio_offset):
        Halver.seen.append(lips)
        return audio * 0.5


def test_a_registered_method_is_evaluated_with_lips_where_there_are_some(shared_data, tmp_path, monkeypatch):
    monkeypatch.setitem(baselines.METHODS, "halver", Halver)
    Halver.seen = []
    report = enhance.evaluate(shared_data, tmp_path / "r.json", ["noisy", "halver"], clips=1, progress=False,
                         plots=False, measure=fake_measure(shared_data))
    assert json.loads((tmp_path / "r.json").read_text()) == report
    halver = [r for r in report["rows"] if r["method"] == "halver"]
    assert len(halver) == 3 + 4 and all(abs(r["si_sdr_improvement"]) < 1e-6 for r in halver)
    lips = Halver.seen[1:]  # after the warm-up call
    assert [x is not None for x in lips] == [True] * 3 + [False] * 4
    assert report["meta"]["methods"] == [{"name": "noisy", "needs_lips": False}, {"name": "halver", "needs_lips": True}]
    assert not report["meta"]["issue_methods_not_registered"]  # every method the issue names is registered


def test_default_methods_are_the_registered_ones_that_can_run(monkeypatch, tmp_path):
    monkeypatch.setenv("AVCALL_WEIGHTS_DIR", str(tmp_path))  # no trained weights there
    methods, notes = baselines.build_methods(None)
    from avcall.pipelines.suppressors import DEFAULT
    from avcall.pipelines.features import enhancers

    packaged = [n for n in enhancers() if n != "avcall-ao"]  # the packaged suppressors need no weights of ours
    chains = ["avcall", "avcall-nogate", "avcall-gate-logistic", "avcall-vad-gate", "avcall-other-lips"]  # the lip gate
    assert [m.name for m in methods] == ["noisy", "noisereduce"] + chains * (DEFAULT in packaged) + packaged
    assert all(isinstance(m, baselines.Method) for m in methods)
    assert len(notes) == len(baselines.METHODS) - len(methods)  # each one left out is said, with why
    assert all("no trained weights" in n or "is missing" in n or "no weights" in n for n in notes), notes

    def untrained():
        raise baselines.MethodUnavailable("no trained weights")

    monkeypatch.setitem(baselines.METHODS, "untrained", untrained)
    methods, notes = baselines.build_methods(None)
    assert "untrained" not in [m.name for m in methods] and any("untrained left out" in n for n in notes)
    with pytest.raises(InputError, match="untrained"):
        baselines.build_methods(["noisy", "untrained"])


# ------------------------------------------------------------------------------------------ CLI
def test_cli_writes_a_report_with_the_summary_keys(shared_data, tmp_path):
    out = tmp_path / "eval" / "report.json"
    result = run_cli("eval", "enhance", "--clips", "2", "--methods", "noisy,noisereduce", "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert set(report["summary"]) == {"talker0dB", "noise0dB", "noise5dB", "pair", "turns"}
    for by_method in report["summary"].values():
        assert set(by_method) == {"noisy", "noisereduce"}
        for entry in by_method.values():
            assert {"si_sdr", "si_sdr_improvement", "pesq", "stoi", "rtf", "n"} <= set(entry)
        assert by_method["noisy"]["si_sdr_improvement"] == 0
        assert by_method["noisereduce"]["rtf"] > 0
    assert all(r["si_sdr_improvement"] == 0 for r in report["rows"] if r["method"] == "noisy")
    assert len(report["rows"]) == (2 * 4 + 4) * 2  # both clips have a silence to stretch: turns too
    assert {"data", "seed", "methods", "conditions", "host", "notes"} <= set(report["meta"])
    plots = sorted(p.name for p in (tmp_path / "eval" / "report_plots").glob("*.png"))
    assert [p.split("_")[0] for p in plots] == ["noise0dB", "noise5dB", "pair", "talker0dB", "turns"]
    assert "noisereduce" in result.stdout and "talker0dB" in result.stdout


def test_cli_unknown_method_is_a_one_line_error(shared_data, tmp_path):
    result = run_cli("eval", "enhance", "--methods", "noisy,wiener", "--out", str(tmp_path / "r.json"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "wiener" in result.stderr and "rnnoise" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_cli_data_folder_without_the_layout_is_a_one_line_error(tmp_path):
    (tmp_path / "speech").mkdir()
    result = run_cli("eval", "enhance", "--data", str(tmp_path), "--out", str(tmp_path / "r.json"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "talking_faces/" in result.stderr and "noise/" in result.stderr
