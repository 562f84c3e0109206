"""The sync judge: its features line up in time, its recipe trains, resumes and exports with parity, and
the shipped judge finds known offsets on the real talking faces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avcall.pipelines.nets.sync_features import AUDIO_PER_VIDEO, LIP_DIM, N_MELS, WINDOW, lip_frames, log_mel, windows
from tests.conftest import run_cli


def test_log_mel_frames_and_standardisation():
    t = np.arange(16_000) / 16_000
    mel = log_mel((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    assert mel.shape == (100, N_MELS)
    assert np.allclose(mel.mean(0), 0, atol=1e-4)


def test_lip_frames_are_centred_on_the_clips_own_mouth():
    rng = np.random.default_rng(0)
    lips = rng.normal(size=(50, 40, 2)).astype(np.float32) + 3.0  # a speaker whose mouth sits far off
    present = np.ones(50, bool)
    present[10:15] = False
    feats = lip_frames(lips, rng.normal(size=50), np.ones(50), present)
    assert feats.shape == (50, LIP_DIM)
    assert np.allclose(feats[present].mean(0), 0, atol=1e-4)
    assert not feats[10:15].any()


def test_windows_move_the_audio_by_the_offset():
    lip = np.arange(40, dtype=np.float32)[:, None].repeat(LIP_DIM, 1)
    mel = np.arange(40 * AUDIO_PER_VIDEO, dtype=np.float32)[:, None].repeat(N_MELS, 1)
    lw, aw, ts = windows(lip, mel, 0)
    assert lw.shape[1:] == (LIP_DIM, WINDOW) and aw.shape[1:] == (N_MELS, WINDOW * AUDIO_PER_VIDEO)
    _, aw3, ts3 = windows(lip, mel, 3)
    i = list(ts3).index(10)
    assert aw3[i, 0, 0] == (10 + 3 - WINDOW // 2) * AUDIO_PER_VIDEO  # video frame 10's window, 3 frames later
    assert lw[list(ts).index(10), 0, WINDOW // 2] == 10


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from avcall.models.data.make import MakeConfig, make_corpus

    out = tmp_path_factory.mktemp("sync") / "corpus"
    make_corpus(MakeConfig(out=out, minutes=0.15, seed=2, workers=2, real_voices=None, video_share=0.0))
    return out


def test_train_resume_and_export(tiny_corpus, tmp_path, monkeypatch):
    run = tmp_path / "run"
    common = ["train", "sync", "--corpus", str(tiny_corpus), "--out", str(run), "--batch", "8", "--ckpt-every", "2",
              "-q"]
    assert run_cli(*common, "--steps", "2").returncode == 0
    r = run_cli(*common, "--steps", "4")  # resumes at step 2
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["step"] for x in (run / "train.log").read_text().splitlines()] == [2, 4]
    from avcall.pipelines.nets.sync_judge import SyncJudge
    from avcall.models.sync.train import export

    entries = export(run, tmp_path / "weights")  # raises if onnxruntime and torch differ by more than 1e-4
    assert set(entries) == {"sync_lips.onnx", "sync_audio.onnx"}
    assert all(e["metrics"]["parity_max_abs"] <= 1e-4 and len(e["sha256"]) == 64 for e in entries.values())
    judge = SyncJudge(tmp_path / "weights" / "sync_lips.onnx", tmp_path / "weights" / "sync_audio.onnx")
    rng = np.random.default_rng(0)
    result = judge.judge(rng.normal(size=(60, 40, 2)), rng.normal(size=60), np.ones(60), np.ones(60, bool),
                         rng.normal(size=16_000 * 60 // 25).astype(np.float32) * 0.1)
    assert len(result.curve) == 31 and -15 <= result.offset_frames <= 15 and result.frames > 0


def test_the_shipped_judge_finds_known_offsets_on_real_faces(shared_data):
    from avcall.app.sync import judge_accuracy
    from avcall.pipelines.runtime import weights_path
    from avcall.models.data.realclips import transcribed_clips

    if not weights_path("sync_lips.onnx").is_file():
        pytest.skip("the sync judge is not shipped in models/weights/")
    clips = [c.path for c in transcribed_clips(shared_data)]  # GRID and LRS2: recorded in sync
    result = judge_accuracy(clips)
    assert result["pairs"] == 7 * len(clips)
    assert result["offset_within_1_frame"] >= 0.9, [r for r in result["rows"] if not r["ok"]]


def test_the_speaking_face_of_two_side_by_side(shared_data):
    """Two real GRID speakers side by side with the left one's voice: the judge says who speaks."""
    import av

    from avcall.models.data.measure import clip_signals
    from avcall.app.sync import lip_tracks_by_face
    from avcall.pipelines.runtime import weights_path
    from avcall.pipelines.nets.sync_judge import SyncJudge

    if not weights_path("sync_lips.onnx").is_file():
        pytest.skip("the sync judge is not shipped in models/weights/")

    def frames(name):
        with av.open(str(shared_data / "talking_faces" / name)) as c:
            return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]

    left, right = frames("GRID_bbaf2n.mpg"), frames("GRID_lbbc2a.mpg")
    n = min(len(left), len(right))
    composite = [np.hstack([left[i], right[i]]) for i in range(n)]
    tracks = lip_tracks_by_face(composite, 25.0)
    assert len(tracks) == 2 and all(t.face_present.mean() > 0.9 for t in tracks)
    judge = SyncJudge()
    for voice, speaker in (("GRID_bbaf2n.mpg", 0), ("GRID_lbbc2a.mpg", 1)):
        _, audio = clip_signals(shared_data / "talking_faces" / voice)
        scores = [judge.speaking_score(t.lips, t.opening, t.width, t.face_present, audio) for t in tracks]
        assert scores[speaker] > scores[1 - speaker] + 0.03, scores


def test_the_live_monitor_reports_a_known_offset(shared_data):
    """The SyncMonitor stage over a real clip whose audio is made 5 frames late, fed as the pipeline feeds it."""
    import asyncio

    from avcall.models.data.measure import clip_signals
    from avcall.app.sync import shift_audio
    from avcall.pipelines.runtime import weights_path
    from avcall.pipelines.frames import AudioFrame, LipFeatures
    from avcall.pipelines.stages.sync_monitor import SyncMonitor

    if not weights_path("sync_lips.onnx").is_file():
        pytest.skip("the sync judge is not shipped in models/weights/")
    track, audio = clip_signals(shared_data / "talking_faces" / "LRS2_deepavsr_00004.mp4")
    audio = shift_audio(audio, 5)
    frames = [LipFeatures(pts=i / 25, present=bool(track.face_present[i]), confidence=1.0, shape=track.lips[i],
                          opening=float(track.opening[i]), width=float(track.width[i])) for i in range(len(track.lips))]
    frames += [AudioFrame(pts=k / 100, samples=audio[k * 160:(k + 1) * 160]) for k in range(len(audio) // 160)]

    async def run():
        monitor = SyncMonitor()
        await monitor.start()
        events = []
        for f in sorted(frames, key=lambda f: f.pts):
            events += [e for e in await monitor.process(f) if getattr(e, "kind", "") == "sync"]
            await asyncio.sleep(0)
        if monitor._pending is not None:
            events.append(await monitor._pending)
        await monitor.stop()
        monitor.shutdown_worker()
        return [e for e in events if e is not None], monitor.telemetry.summary()

    events, summary = asyncio.run(run())
    assert events and summary["judgements"] >= 1
    assert abs(summary["offset_ms"] - 200) <= 40, summary


def test_the_curve_embeds_each_voice_window_once_and_equals_the_curve_per_offset(shared_data):
    """The distance curve embeds every audio window once, for all 31 offsets (the window at offset o for frame
    t is the one centred on t + o): the same curve as embedding the windows of each offset anew."""
    from avcall.models.data.measure import clip_signals
    from avcall.pipelines.nets.sync_features import lip_frames, log_mel, windows
    from avcall.pipelines.nets.sync_judge import MAX_OFFSET, SyncJudge
    from avcall.pipelines.runtime import weights_path

    if not weights_path("sync_lips.onnx").is_file():
        pytest.skip("the sync judge is not shipped in models/weights/")
    track, audio = clip_signals(shared_data / "talking_faces" / "LRS2_deepavsr_00004.mp4")
    judge = SyncJudge()
    calls = []
    embed = judge.embed
    judge.embed = lambda lw, aw: (calls.append(len(aw)), embed(lw, aw))[1]
    curve, frames = judge.curve(track.lips, track.opening, track.width, track.face_present, audio)
    judge.embed = embed
    lip, mel = lip_frames(track.lips, track.opening, track.width, track.face_present), log_mel(audio)
    lw, _, ts = windows(lip, mel, 0)
    ok = np.asarray(track.face_present, bool)
    keep = np.array([ok[t - 2:t + 3].all() for t in ts])  # the frames whose whole window has a face
    lw, ts = lw[keep], ts[keep]
    le, _ = judge.embed(lw, lw[:0])
    anew = []
    for o in range(-MAX_OFFSET, MAX_OFFSET + 1):
        _, aw, ts_o = windows(lip, mel, o)
        index = {t: i for i, t in enumerate(ts_o)}
        pick = [i for i, t in enumerate(ts) if t in index]
        _, ae = judge.embed(lw[:0], aw[[index[ts[i]] for i in pick]])
        anew.append(float(np.linalg.norm(le[pick] - ae, axis=1).mean()))
    assert frames == len(ts) > 50
    assert np.allclose(curve, anew, atol=1e-4), np.abs(curve - np.array(anew)).max()
    # each voice window once: those centred within the frames' span and MAX_OFFSET either side (was 31 x frames)
    assert sum(calls) <= ts.max() - ts.min() + 1 + 2 * MAX_OFFSET
