"""The voice-to-lips net and the talking face: the recipe trains, resumes and exports (ONNX = torch, hop by
hop = whole clip), and `avcall process --avatar voice` makes a 25 fps portrait video from a voice alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from avcall.models.data.make import MakeConfig, make_corpus

    out = tmp_path_factory.mktemp("talk") / "corpus"
    make_corpus(MakeConfig(out=out, minutes=0.15, seed=3, workers=2, real_voices=None, video_share=0.0))
    return out


@pytest.fixture(scope="module")
def weights(tiny_corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("talk_run") / "run"
    common = ["train", "talking-face", "--corpus", str(tiny_corpus), "--out", str(run), "--batch", "4",
              "--hidden", "32", "--ckpt-every", "2", "-q"]
    assert run_cli(*common, "--steps", "2").returncode == 0
    r = run_cli(*common, "--steps", "4")  # resumes at step 2
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["step"] for x in (run / "train.log").read_text().splitlines()] == [2, 4]
    from avcall.models.talking_face.train import export

    out = run.parent / "weights"
    entry = export(run, out)  # raises unless ONNX = torch (1e-4) and hop by hop = whole clip (1e-5)
    assert entry["metrics"]["parity_max_abs"] <= 1e-4 and entry["lookahead_ms"] == 60
    return out


def test_streaming_equals_whole_clip(weights):
    from avcall.pipelines.nets.voice_to_lips import HOPS_PER_VIDEO, LOOKAHEAD
    from avcall.pipelines.nets.voice_to_lips import VoiceToLipsStream

    net = VoiceToLipsStream(weights / "talking_face.onnx")
    audio = (0.1 * np.random.default_rng(0).standard_normal(16_000)).astype(np.float32)
    track = net.clip(audio)
    assert len(track.lips) == 25 and track.fps == 25.0
    padded = np.concatenate([audio, np.zeros(LOOKAHEAD * 160, np.float32)])
    rows = [net.step(padded[k:k + 160]) for k in range(0, len(padded), 160)]
    hops = np.array(rows[LOOKAHEAD:])
    frame_rows = hops[np.clip(np.arange(25) * HOPS_PER_VIDEO - 1, 0, None)]
    assert np.abs(np.maximum(frame_rows[:, 80], 0) - track.opening).max() < 1e-4  # the clip's openings are >= 0
    assert np.abs(frame_rows[:, :80].reshape(-1, 40, 2) + net.mean - track.lips).max() < 1e-4


def test_process_avatar_from_a_voice_alone(weights, tmp_path, monkeypatch):
    import av
    import soundfile as sf

    monkeypatch.setenv("AVCALL_WEIGHTS_DIR", str(weights))
    t = np.arange(2 * 16_000) / 16_000
    voice = (0.3 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(tmp_path / "voice.wav", voice, 16_000)
    r = run_cli("process", str(tmp_path / "voice.wav"), "-o", str(tmp_path / "out"), "--avatar", "voice", "-q")
    assert r.returncode == 0, r.stderr
    with av.open(str(tmp_path / "out" / "annotated.mp4")) as c:
        frames = [f for f in c.decode(video=0)]
    assert frames[0].width == frames[0].height == 256
    assert abs(len(frames) - 50) <= 2  # 25 fps for the 2 s voice
    r = run_cli("process", str(tmp_path / "voice.wav"), "-o", str(tmp_path / "o2"), "--avatar", "voice",
                "--portrait", str(tmp_path / "missing.png"), "-q")
    assert r.returncode == 2 and "missing.png" in r.stderr


def test_band_means_take_away_level_and_colour():
    """The net's second half of input is each band against its running mean: the same for a voice 20 dB
    louder or through a microphone of another colour (a fixed gain per band), from the first hop on; and the
    same hop by hop as for the whole clip."""
    from avcall.pipelines.nets.voice_to_lips import N_MELS
    from avcall.pipelines.nets.voice_to_lips import BandMean, log_mel_frames, voice_features

    rng = np.random.default_rng(1)
    t = np.arange(3 * 16_000) / 16_000
    voice = np.sin(2 * np.pi * 140 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) + 0.3 * rng.standard_normal(len(t))
    voice = voice.astype(np.float32)
    base = voice_features(voice)
    assert np.abs(voice_features(10 * voice)[:, N_MELS:] - base[:, N_MELS:]).max() < 1e-3
    mel = log_mel_frames(voice)
    colour = rng.uniform(-3, 3, N_MELS).astype(np.float32)  # a gain per band, in log power
    assert np.abs(BandMean().features(mel + colour)[:, N_MELS:] - base[:, N_MELS:]).max() < 1e-4
    stream = BandMean()
    hops = np.concatenate([stream.features(mel[i:i + 1]) for i in range(len(mel))])
    assert np.abs(hops - base).max() < 1e-5
