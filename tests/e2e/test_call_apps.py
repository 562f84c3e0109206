"""`avcall live` as call apps meet it, on a real sound server: Debian's PulseAudio, started by the test in a
folder of its own (app/sound_server.py), with a "speakers" sink the far end plays on and a "feed" sink whose
monitor is the microphone (paplay plays a clip into it, at real time, as a talker would).

The virtual microphone: what `avcall live` sends is what a call app records from "avcall microphone", and
nothing is left on the server after a normal exit, SIGTERM, or SIGKILL followed by the next start. The echo
control: `avcall bench echo`'s measurement (the far end into the speakers, the microphone through a pipe
source). The virtual camera: the one line where no loopback device exists, and the file-backed camera.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from avcall.app.sound_server import SPEAKERS, private_pulseaudio, pulseaudio_binary
from avcall.pipelines.sinks.camera_file import read_frames

pytestmark = pytest.mark.skipif(pulseaudio_binary() is None,
                                reason="no pulseaudio binary (Debian: apt-get install pulseaudio pulseaudio-utils)")

FEED = ["load-module module-null-sink sink_name=feed rate=16000 channels=1 channel_map=mono "
        "sink_properties=device.description=Feed"]
CLIP = "speech/pyroomacoustics_cmu_arctic_us_aew_a0001.wav"


@pytest.fixture()
def server():
    with private_pulseaudio([*SPEAKERS, *FEED]) as s:
        yield s


def live(server, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "avcall.app.cli", "live", "--no-window", *args],
                            env={**os.environ, **server.env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def avcall_modules(server) -> list[str]:
    return [line for line in server.pactl("list", "short", "modules").splitlines() if "avcall" in line]


def wait_for_mic(server, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until `process` has made its avcall microphone (its modules carry its pid)."""
    deadline = time.monotonic() + timeout
    while sum(f"avcall.pid={process.pid}" in m for m in avcall_modules(server)) < 2:
        if process.poll() is not None or time.monotonic() > deadline:
            out, err = process.communicate()
            pytest.fail(f"the avcall microphone never appeared: {err[-2000:]}")
        time.sleep(0.1)


def test_the_voice_comes_out_of_the_avcall_microphone(server, shared_data, tmp_path):
    run = live(server, "--camera", "off", "--mic", "feed.monitor", "--seconds", "9", "--record", str(tmp_path / "rec"))
    wait_for_mic(server, run)
    sources = server.pactl("list", "short", "sources")
    devices = subprocess.run([sys.executable, "-m", "avcall.app.cli", "devices"], env={**os.environ, **server.env},
                             capture_output=True, text=True, timeout=60).stdout
    assert "'avcall microphone' (avcall_mic), made by avcall live" in devices
    env = {**os.environ, **server.env}
    recorded = tmp_path / "call_app.raw"
    call_app = subprocess.Popen(["parec", "--device=avcall_mic", "--format=float32le", "--rate=16000",
                                 "--channels=1", "--raw", str(recorded)], env=env)
    time.sleep(1.0)
    subprocess.run(["paplay", "--device=feed", str(shared_data / CLIP)], env=env, check=True, timeout=30)
    out, err = run.communicate(timeout=120)
    call_app.terminate()
    call_app.wait()
    assert run.returncode == 0, err
    assert "pick it in the call app" in err and "Traceback" not in err
    assert avcall_modules(server) == []  # nothing left behind
    assert "avcall_mic" not in server.pactl("list", "short", "sources")
    print(sources)  # the listing the README shows

    heard = np.fromfile(recorded, np.float32)
    sent, _ = soundfile.read(str(tmp_path / "rec" / "enhanced.wav"), dtype="float32")
    assert np.abs(sent).max() > 0.1  # the voice went through, not silence
    r, lags = aligned_correlation(heard, sent)
    print(f"call app's recording vs enhanced.wav: r = {r:.4f}, offsets {min(lags) / 16:.1f} to {max(lags) / 16:.1f} ms")
    assert r >= 0.9


def aligned_correlation(heard: np.ndarray, sent: np.ndarray, piece: int = 4000) -> tuple[float, list[int]]:
    """The correlation of `sent`'s voiced quarter-seconds with `heard` where each one is found (the offset
    is searched within 50 ms of the whole clip's): on a loaded machine the stream to the server can run dry
    for a moment (the server plays silence meanwhile, and the rest comes that much later), and enhanced.wav
    fills a gap in the capture times with silence; the samples themselves must be the same."""
    from scipy.signal import correlate

    lag = int(np.argmax(correlate(heard, sent, mode="full", method="fft"))) - (len(sent) - 1)
    pairs, lags = [], []
    for start in range(0, len(sent) - piece, piece):
        seg = sent[start:start + piece]
        if np.std(seg) < 0.01:
            continue
        lo, hi = max(0, start + lag - 800), min(len(heard), start + lag + 800 + piece)
        if hi - lo < piece:
            continue
        best = int(np.argmax(correlate(heard[lo:hi], seg, mode="valid", method="fft"))) + lo
        pairs.append((seg, heard[best:best + piece]))
        lags.append(best - start)
    a, b = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    return float(np.corrcoef(a, b)[0, 1]), lags


def test_killed_runs_leave_the_pair_that_the_next_start_removes(server):
    first = live(server, "--camera", "off", "--mic", "feed.monitor", "--seconds", "60", "--enhance", "off")
    wait_for_mic(server, first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    stale = avcall_modules(server)
    assert len(stale) == 2 and all(f"avcall.pid={first.pid}" in m for m in stale)  # SIGKILL: no clean-up ran

    second = live(server, "--camera", "off", "--mic", "feed.monitor", "--seconds", "60", "--enhance", "off")
    wait_for_mic(server, second)
    now = avcall_modules(server)
    assert len(now) == 2 and all(f"avcall.pid={second.pid}" in m for m in now)  # the stale pair is gone
    second.send_signal(signal.SIGTERM)
    out, err = second.communicate(timeout=60)
    assert avcall_modules(server) == [] and "Traceback" not in err


def test_a_second_live_run_leaves_the_first_ones_microphone_alone(server):
    first = live(server, "--camera", "off", "--mic", "feed.monitor", "--seconds", "60", "--enhance", "off")
    try:
        wait_for_mic(server, first)
        second = live(server, "--camera", "off", "--mic", "feed.monitor", "--seconds", "2", "--enhance", "off")
        out, err = second.communicate(timeout=60)
        assert second.returncode == 2 and f"another `avcall live` (pid {first.pid})" in err
        assert all(f"avcall.pid={first.pid}" in m for m in avcall_modules(server))
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert avcall_modules(server) == []


def test_no_loopback_camera_is_one_line_and_live_runs_on(server, shared_data, tmp_path):
    """The camera is a clip here (OpenCV opens files like cameras); with no loopback device the run says so
    in one line and goes on; with the file-backed camera its frames are what a call app would receive."""
    if Path("/sys/module/v4l2loopback").exists():
        pytest.skip("this machine has v4l2loopback: the missing-device line cannot show")
    clip = str(shared_data / "talking_faces" / "GRID_bbaf2n.mpg")
    run = live(server, "--camera", clip, "--mic", "feed.monitor", "--seconds", "3", "--enhance", "off")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    lines = [line for line in err.splitlines() if "virtual camera" in line]
    assert len(lines) == 1 and "v4l2loopback" in lines[0] and "modprobe" in lines[0], err
    assert "avcall live:" in out and avcall_modules(server) == []

    frames = tmp_path / "camera.raw"
    run = live(server, "--camera", clip, "--mic", "feed.monitor", "--seconds", "3", "--enhance", "off",
               "--camera-out", f"file:{frames}")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0 and "virtual camera" not in err, err
    # OpenCV reads a clip as fast as it decodes and the camera keeps the newest frame: a few frames come out
    meta, sent = read_frames(frames)
    assert meta["frames"] >= 1 and (meta["width"], meta["height"]) == (360, 288) and sent.shape[0] == meta["frames"]
    assert sent.mean() > 20  # the face's picture, not a blank frame


def test_the_echo_is_cancelled_through_the_sound_server(shared_data):
    """`avcall bench echo`'s scene, AEC3 only and with the far end only: the far end played into the speakers
    sink, the microphone (the user plus the far end through a simulated room) through a pipe source, AEC3 in
    avcall live's EchoControl stage reading the sink's monitor. The figures (AEC3 against speexdsp, the near
    end in double talk, CPU) are the benchmark's, `bench/echo.json`; this checks the path they come through:
    the microphone arrives intact, the monitor is heard, and the reference lines up with the echo (a far end
    read late or early by more than the canceller's filter cancels next to nothing)."""
    from avcall.app.bench_echo import bench_echo

    result = bench_echo(shared_data / "speech", cancellers=("aec3",), near_end=False)
    aec3 = result["cancellers"]["aec3"]
    print(json.dumps({f: v for f, v in aec3.items() if f != "erle_windows_first_span"}))
    assert aec3["recorded_mic_matches_sent"] > 0.999  # the microphone went through the server intact
    assert aec3["far_hops_rendered"] > 0.9 * result["scene"]["seconds"] * 100  # the monitor was heard
    assert aec3["erle_far_only_db"] >= 15.0  # the bench on a quiet machine: bench/echo.json
    assert "near_si_sdr_no_far_end_db" not in aec3  # no second pass asked for


def test_where_the_voice_comes_from_and_goes_to(server):
    """The plan `avcall live` makes before the call: the microphone and the far end are the server's (its
    defaults as they were before the avcall microphone existed); the avcall microphone is never its own input
    nor its own far end; without a server, one line and the default output."""
    from avcall.app.live import plan_audio
    from avcall.pipelines import pulse, virtual_mic
    from avcall.pipelines.errors import DeviceError

    none = plan_audio(None, mic="default", output=None, mic_out=True, far_end=None, echo="aec3")
    assert none.play and none.voice_sink is None and none.far_end is None and not none.mic_from_server
    assert len(none.notes) == 1 and "no sound server" in none.notes[0]
    with server.use(), pulse.session() as s:
        plan = plan_audio(s, mic="default", output=None, mic_out=True, far_end=None, echo="aec3")
        assert (plan.mic, plan.mic_from_server, plan.far_end) == (pulse.default_source(s), True, "speakers.monitor")
        assert plan.voice_sink == virtual_mic.SINK and not plan.play
        assert plan_audio(s, mic="Monitor of Feed", output=None, mic_out=True, far_end="off", echo="aec3").mic \
            == "feed.monitor"  # by description, as the desktop shows it
        made = virtual_mic.create(s)
        try:
            with pytest.raises(DeviceError, match="avcall microphone itself"):
                plan_audio(s, mic="avcall microphone", output=None, mic_out=True, far_end=None, echo="aec3")
            with pytest.raises(DeviceError, match="avcall microphone itself"):  # the server's default now
                plan_audio(s, mic="default", output=None, mic_out=True, far_end=None, echo="aec3")
            with pytest.raises(DeviceError, match="--far-end"):
                plan_audio(s, mic="feed.monitor", output=None, mic_out=True, far_end=virtual_mic.SINK, echo="aec3")
        finally:
            virtual_mic.remove(s, made)
        assert avcall_modules(server) == []
