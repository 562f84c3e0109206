"""The lip gate (pipelines/lip_gate.py and its stage): it opens in time for the face's own phrases, holds
another voice back while the lips are still or out of step with it, never mutes a user it cannot see, and
never clicks. Real faces and voices from ../shared/data (skipped when it is absent)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from avcall.pipelines.frames import HOP_SAMPLES, SAMPLE_RATE, AudioFrame, Control, FaceObservation, LipFeatures
from avcall.pipelines.lip_gate import FLOOR_DB, WARM_S, GateDecision, gate_clip

DTLN_DELAY = 480  # samples: the default suppressor's; the gate sees the raw voice that far ahead of its output
OPEN = 10 ** (-3 / 20)


@pytest.fixture(scope="module")
def judge():
    from avcall.pipelines.nets.sync_judge import SyncJudge

    return SyncJudge()


@pytest.fixture(scope="module")
def speech(shared_data):
    from avcall.app.eval.data import load_audio, speech_files

    return [load_audio(p) for p in speech_files(shared_data)]


def clip_turns(shared_data, speech, name: str):
    """A real talking face in the `turns` condition: it talks, listens while another person talks, talks again."""
    from avcall.app.eval.data import load_audio, noise_files
    from avcall.models.data.measure import measure_video
    from avcall.models.data.turns import build, recognised_words

    m = measure_video(shared_data / "talking_faces" / name)
    audio = np.asarray(m.audio, np.float32)
    noise = load_audio(noise_files(shared_data)[0])
    ex = build(audio, m.track, float(m.audio_offset), recognised_words(audio), speech, noise, 0, name)
    assert ex is not None, f"{name}: no silence to stretch"
    return ex


def energy_db(gains: np.ndarray, signal: np.ndarray, hops: np.ndarray) -> float:
    """The energy the gains let through over the given 10 ms hops, in dB against the signal's."""
    n = len(hops)
    e = np.sum(np.square(signal[:n * HOP_SAMPLES].astype(np.float64)).reshape(n, HOP_SAMPLES), axis=1)
    g = np.mean(np.square(gains[:n * HOP_SAMPLES].astype(np.float64)).reshape(n, HOP_SAMPLES), axis=1)
    return float(10 * np.log10(np.sum(g[hops] * e[hops]) / np.sum(e[hops])))


def test_opens_within_40_ms_of_a_phrase_and_holds_the_other_voice_back(shared_data, speech, judge):
    ex = clip_turns(shared_data, speech, "GRID_lwbsza.mpg")
    gains = gate_clip(ex.mixture, ex.lips.frames(), delay=DTLN_DELAY, judge=judge)
    for onset in ex.onsets:  # the target's phrases after the other person's turn
        i = int(onset * SAMPLE_RATE)
        opened = np.flatnonzero(gains[i:i + SAMPLE_RATE // 2] >= OPEN)
        assert len(opened) and opened[0] <= 0.04 * SAMPLE_RATE, f"opened {opened[:1] / 16} ms after {onset:.2f} s"
    listening = ex.other_only.copy()
    listening[:int(WARM_S * 100)] = False  # a face just found is not judged yet: open (never mutes the user)
    assert energy_db(gains, ex.mixture, listening) <= -12.0  # the other voice, while the lips are still
    n = len(ex.target_only)
    kept = np.mean(np.square(gains[:n * HOP_SAMPLES]).reshape(n, HOP_SAMPLES), axis=1)[ex.target_only]
    assert np.mean(kept < 0.25) <= 0.03  # the face's own speech passes


@pytest.mark.xfail(strict=True, reason="issue 29, not met: with lips that move but not with the voice heard, the "
                   "net holds the other voice back by 3 dB here, not 6 (the net trained without the generated "
                   "portraits held it back by more than 6, but took the demo's portrait for a face that listens)")
def test_another_voice_with_lips_out_of_step_is_held_back(shared_data, speech, judge):
    """The face talks (its lips move) but the voice heard is another person's: a clip whose audio is replaced."""
    from avcall.models.data.measure import measure_video

    m = measure_video(shared_data / "talking_faces" / "SadTalker_WDA_AlexandriaOcasioCortez_000.mp4")
    lips = m.track.frames(float(m.audio_offset))
    other = np.concatenate(speech)[: int(lips[-1].pts * SAMPLE_RATE)]
    gains = gate_clip(other, lips, judge=judge)
    voiced = np.zeros(len(other) // HOP_SAMPLES, bool)
    voiced[2 * 100:] = True  # after the first 2 s: the net has seen enough of both to tell
    assert energy_db(gains, other, voiced) <= -6.0


def still_face(pts: float, confidence: float = 0.95, opening: float = 0.05) -> LipFeatures:
    return LipFeatures(pts=pts, present=True, confidence=confidence, shape=np.zeros((40, 2), np.float32),
                       opening=opening, width=1.0)


def bursts(seconds: float, seed: int = 1) -> np.ndarray:
    """Another voice as the gate hears it: noise in syllable-like bursts, three a second."""
    n = int(seconds * SAMPLE_RATE)
    envelope = (np.sin(2 * np.pi * 3 * np.arange(n) / SAMPLE_RATE) > 0).astype(np.float32) + 0.01
    return (0.1 * np.random.default_rng(seed).standard_normal(n) * envelope).astype(np.float32)


def run_decision(lips_for, seconds: float = 4.0, fps: float = 25.0) -> tuple[np.ndarray, str]:
    """Gains of a gate fed another voice and `lips_for(pts)` per frame (None: no frame came), and its last
    reason."""
    n = int(seconds * SAMPLE_RATE)
    voice = bursts(seconds)
    gate = GateDecision()
    gains, k = [], 0
    for i in range(0, n - HOP_SAMPLES + 1, HOP_SAMPLES):
        t = i / SAMPLE_RATE
        while k / fps <= t:
            frame = lips_for(k / fps)
            if frame is not None:
                gate.push_lips(frame)
            k += 1
        gains.append(gate.gain(voice[i:i + HOP_SAMPLES], t))
    return np.concatenate(gains), gate.state.reason


def test_open_without_a_usable_face():
    """No face, a face tracked with low confidence, the camera off after a while: never muted, and it says why."""
    no_face, why = run_decision(lambda pts: LipFeatures(pts=pts, present=False, confidence=0.0))
    assert no_face.min() >= 0.999 and why == "no face"
    unsure, why = run_decision(lambda pts: still_face(pts, confidence=0.2))
    assert unsure.min() >= 0.999 and why == "lips tracked with low confidence"
    camera_off, why = run_decision(lambda pts: still_face(pts) if pts < 1.0 else None)
    assert camera_off[int(1.5 * SAMPLE_RATE):].min() >= 0.999 and why == "camera off"  # within FACE_LOST_S


def test_a_hop_out_of_time_order_after_the_face_was_taken_for_lost():
    """A loaded live call (two and three calls a worker, `avcall bench cluster`) gave the gate a hop earlier
    than the one before it, after that one had taken the face for lost: the gate threw on it (float minus
    None) and the call's voice went on ungated. It stays open, as for a face just found, and goes on."""
    from avcall.pipelines.lip_gate import FACE_LOST_S

    decision = GateDecision()
    decision.push_lips(still_face(1.0))
    hop = np.full(HOP_SAMPLES, 0.1, np.float32)
    decision.gain(hop, 1.0 + FACE_LOST_S + 0.2)  # no lips for a while: the face is taken for lost
    gains = decision.gain(hop, 1.0 + FACE_LOST_S - 0.1)  # a hop from before that, late
    assert gains.min() >= 0.999 and decision.state.open
    decision.push_lips(still_face(1.0 + FACE_LOST_S + 0.3))  # the lips again: the decision goes on
    decision.gain(hop, 1.0 + FACE_LOST_S + 0.31)


def test_the_stage_is_open_for_a_profile_and_states_why():
    from avcall.pipelines.stages.lip_gate import LipGate, frontal

    landmarks = np.zeros((478, 3), np.float32)
    landmarks[33, 0], landmarks[263, 0] = 100.0, 200.0  # the eyes' outer corners
    landmarks[1, 0] = 195.0  # the nose near one eye: a face turned away
    profile = FaceObservation(pts=0.0, present=True, confidence=0.99, landmarks=landmarks, bbox=(0, 0, 10, 10))
    assert not frontal(profile)
    assert frontal(replace(profile, landmarks=np.where(np.arange(478)[:, None] == 1, 150.0, landmarks)))

    async def run():
        stage = LipGate(use_judge=False)
        await stage.start()
        out = []
        rng = np.random.default_rng(0)
        for k in range(100):  # 4 s at 25 fps: a profile whose lips are still, someone talking
            pts = k / 25
            await stage.process(replace(profile, pts=pts))
            await stage.process(still_face(pts))
            for j in range(4):
                hop = AudioFrame(pts=pts + j / 100, samples=(0.1 * rng.standard_normal(HOP_SAMPLES)).astype(np.float32))
                out += await stage.process(hop)
        return stage, out

    stage, out = asyncio.run(run())
    gains = np.concatenate([f.gate for f in out if isinstance(f, AudioFrame)])
    assert gains.min() >= 0.999
    assert set(stage.telemetry.reasons) <= {"camera off", "face turned away"}  # before the first frame: none came
    assert stage.telemetry.reasons["face turned away"] >= stage.telemetry.hops - 4


def test_switched_off_it_ramps_open_without_a_click(speech):
    """A still face while another person talks (real speech): held back; switched off, it ramps open."""
    from avcall.pipelines.stages.lip_gate import LipGate

    voice = np.concatenate(speech)[:6 * SAMPLE_RATE]

    async def run():
        stage = LipGate(use_judge=False)
        await stage.start()
        gains = []
        for k in range(150):
            pts = k / 25
            if k == 100:
                stage.on_control(Control(pts=pts, values={"lip_gate": False}).values)
            await stage.process(still_face(pts))
            for j in range(4):
                i = (4 * k + j) * HOP_SAMPLES
                gains += [f.gate for f in await stage.process(AudioFrame(pts=i / SAMPLE_RATE,
                                                                         samples=voice[i:i + HOP_SAMPLES]))]
        return np.concatenate(gains)

    gains = asyncio.run(run())
    assert gains[int(2 * SAMPLE_RATE):int(4 * SAMPLE_RATE)].max() <= 10 ** ((FLOOR_DB + 1) / 20)  # held back
    assert gains[int(4.1 * SAMPLE_RATE):].min() >= 0.999  # switched off: open
    assert np.abs(np.diff(gains)).max() < 0.03


def test_no_click_at_any_transition(shared_data, speech, judge):
    """Every change of the gate is a ramp: no sample of the output jumps further than the input's own steps
    allow (a hard switch from -30 dB to 0 dB would jump by most of the signal's amplitude)."""
    ex = clip_turns(shared_data, speech, "GRID_lwbsza.mpg")
    gains = gate_clip(ex.mixture, ex.lips.frames(), delay=DTLN_DELAY, judge=judge)
    assert gains.max() <= 1.0 and gains.min() >= 10 ** (FLOOR_DB / 20) - 1e-6
    assert np.abs(np.diff(gains)).max() < 0.03  # 30 dB over 10 ms at the most: ~0.022 a sample near full gain
    out = ex.mixture * gains
    assert np.abs(np.diff(out)).max() <= np.abs(np.diff(ex.mixture)).max() + 0.03 * np.abs(ex.mixture).max()


def test_the_enhancer_applies_the_gate_to_the_samples_it_was_decided_for():
    """Live the suppressor's output lags by its delay: each gain meets the samples of its own time, so where the
    gate is open the output is exactly the suppressor's; offline (delay taken off) likewise."""
    from avcall.pipelines.stages.speech_enhancer import SpeechEnhancer
    from tests.pipelines.test_enhancer_stage import Delay

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    gate = np.ones(len(x), np.float32)
    gate[4000:8000] = 0.25  # held back between 0.25 s and 0.5 s of the raw voice's time

    async def run(compensate: bool):
        stage = SpeechEnhancer(Delay(delay=480, gain=1.0), compensate_delay=compensate)
        await stage.start()
        out = []
        for i in range(0, len(x), 320):
            out += await stage.process(AudioFrame(pts=i / SAMPLE_RATE, samples=x[i:i + 320], gate=gate[i:i + 320]))
        out += await stage.flush()
        stage.shutdown_worker()
        return np.concatenate([f.samples for f in out])

    live, offline = asyncio.run(run(False)), asyncio.run(run(True))
    np.testing.assert_allclose(live[480:], (x * gate)[:-480], atol=1e-6)
    np.testing.assert_allclose(offline, x * gate, atol=1e-6)


def test_the_captioner_hears_the_raw_voice_through_the_gate():
    """Through the gate with its floor doubled in dB (the recogniser hears a voice at -30 dB as words)."""
    from avcall.pipelines.stages.captioner import Captioner

    heard = []

    class Ears:
        name, agreement = "ears", 1

        def begin(self): pass
        def accept(self, samples): heard.append(np.array(samples))
        def partial(self): return ""
        def finish(self): return []

    async def run():
        stage = Captioner(Ears(), onset_s=0.0)
        samples = np.full(1600, 0.5, np.float32)
        await stage.process(AudioFrame(pts=0.0, samples=samples, gate=np.full(1600, 0.1, np.float32)))
        await stage.flush()

    asyncio.run(run())
    assert heard and np.allclose(np.concatenate(heard)[-800:], 0.5 * 0.1 ** 2)
