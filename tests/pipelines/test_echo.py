"""The echo cancellers behind pipelines/echo.py and the EchoControl stage's pairing of far-end and microphone
hops, offline (the sound-server path is tests/e2e/test_call_apps.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avcall.pipelines.clock import SessionClock
from avcall.pipelines.echo import Aec3, Canceller, Speex, cancel_clip, open_canceller
from avcall.pipelines.frames import HOP_SAMPLES, SAMPLE_RATE, AudioFrame
from avcall.pipelines.stages import echo_control


def test_aec3_output_lags_by_its_declared_delay():
    """White noise in, nothing played: the output is the input `delay` samples late (and high-passed)."""
    x = (np.random.default_rng(0).standard_normal(4 * SAMPLE_RATE) * 0.05).astype(np.float32)
    out = cancel_clip(Aec3(), x, np.zeros_like(x)).astype(np.float64)
    a, b = SAMPLE_RATE, 3 * SAMPLE_RATE
    response = np.fft.irfft(np.fft.rfft(out[a:b]) * np.conj(np.fft.rfft(x[a:b]))) / np.sum(x[a:b] ** 2)
    assert int(np.argmax(np.abs(response[:1024]))) == Aec3.delay
    assert response[Aec3.delay] > 0.8


@pytest.fixture(scope="module")
def scene(shared_data):
    from avcall.app.bench_echo import make_scene

    return make_scene(shared_data / "speech")


def test_both_cancellers_take_a_room_echo_out_offline(scene):
    """The first far-end-only span of the bench's scene, the far end and the microphone aligned sample for
    sample: AEC3 takes >= 25 dB out after its first second, speexdsp's filter less but something."""
    from avcall.app.bench_echo import erle_db

    span = scene.spans["far_only"][0]
    a, b = int((span[0] + 1.0) * SAMPLE_RATE), int(span[1] * SAMPLE_RATE)
    mic = scene.mic()
    erle = {}
    for name in ("aec3", "speex"):
        c = open_canceller(name)
        out = cancel_clip(c, mic, scene.far)
        erle[name] = erle_db(mic[a:b], out[a + c.delay:b + c.delay])
    assert erle["aec3"] >= 25.0, erle
    assert 3.0 < erle["speex"] < erle["aec3"], erle


class Recording(Canceller):
    """Says what it was handed, in order; its output is the microphone hop negated (to see it was used)."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def render(self, hop):
        self.calls.append(("render", float(hop[0])))

    def capture(self, hop):
        self.calls.append(("capture", float(hop[0])))
        return -hop


class FakeRecorder:
    """The far end's reader, driven by the test: `feed` is what the reading thread would hand on."""

    def __init__(self, device, on_hop, *, name=""):
        self.device, self.on_hop, self.opened, self.closed = device, on_hop, False, False

    def open(self):
        self.opened = True

    def close(self):
        self.closed = True


def test_echo_control_renders_the_far_end_up_to_each_microphone_hop(monkeypatch):
    """Far-end hops are stamped as they come; a microphone hop of time t is captured after every far-end hop
    that began before t + 10 ms, and never before one that began later."""
    canceller = Recording()
    monkeypatch.setattr(echo_control, "open_canceller", lambda name: canceller)
    clock = SessionClock()
    stage = echo_control.EchoControl("speakers.monitor", clock=clock, recorder=FakeRecorder)
    hop_s = HOP_SAMPLES / SAMPLE_RATE

    async def run():
        await stage.start()
        recorder = stage._recorder
        assert recorder.opened and recorder.device == "speakers.monitor"
        now = clock.now()
        for k in range(3):  # three far-end hops arrive (the reading thread stamps them on arrival)
            recorder.on_hop(np.full(HOP_SAMPLES, k + 1, np.float32))
        mic = AudioFrame(pts=now + 3 * hop_s, samples=np.full(HOP_SAMPLES, 0.5, np.float32))
        out = await stage.process(mic)
        late = AudioFrame(pts=now - 10.0, samples=np.full(HOP_SAMPLES, 0.25, np.float32))
        out2 = await stage.process(late)  # nothing queued: captured without a render
        await stage.stop()
        return recorder, mic, out, out2

    recorder, mic, out, out2 = asyncio.run(run())
    assert canceller.calls == [("render", 1.0), ("render", 2.0), ("render", 3.0), ("capture", 0.5),
                               ("capture", 0.25)]
    assert np.allclose(out[0].samples, -0.5) and out[0].pts == mic.pts
    assert np.allclose(out2[0].samples, -0.25)
    assert recorder.closed and stage.far_hops == 3


def test_speex_pairs_one_far_hop_per_microphone_hop():
    """speexdsp's canceller takes the oldest waiting far-end hop with each microphone hop (silence if none)."""
    s = Speex()
    tone = (0.3 * np.sin(2 * np.pi * 500 * np.arange(HOP_SAMPLES) / SAMPLE_RATE)).astype(np.float32)
    for _ in range(3):
        s.render(tone)
    assert len(s._far) == 3
    s.capture(np.zeros(HOP_SAMPLES, np.float32))
    assert len(s._far) == 2
    out = [s.capture(np.zeros(HOP_SAMPLES, np.float32)) for _ in range(4)]  # two paired, then silence
    assert len(s._far) == 0 and all(o.shape == (HOP_SAMPLES,) for o in out)
