"""`avcall bench echo`: the echo control measured through a real sound server, WebRTC's AEC3 beside speexdsp.

The scene (16 kHz, about 16 s, from ../shared/data/speech): the far end talks alone, then the user alone,
then both at once (double talk), then the far end alone again. The far end is played into the output sink
("speakers", the default sink of a private PulseAudio, as a call app plays it); the microphone is fed through
a pipe source with the user's voice plus the far end through a room impulse response (pyroomacoustics'
image method, a 4.5 x 3.8 x 2.7 m room, RT60 0.3 s, loudspeaker 0.35 m from the microphone, the echo as loud
as the user) and a -65 dBFS noise floor, `MIC_LAG_S` behind what the sink plays (the loudspeaker's own
buffer). `avcall live`'s own pieces run it: PulseSource reads the microphone, EchoControl the sink's monitor.
Each canceller runs twice: with the far end, and with no far end at all (nothing plays, the microphone holds
the user and the noise floor): the near end's SI-SDR over the double talk is compared between the two, each
against the user's voice passed through the canceller's own linear filters (see `as_passed`).

Figures, per canceller: ERLE (echo return loss enhancement: microphone power over output power) over the
far-end-only spans, whole and per span; convergence: from the far end's first sound to the start of the
first 200 ms window after which every window of far-end speech in that span has ERLE >= 20 dB; the near
end's SI-SDR over the double talk, with and without echo; the canceller's CPU per second of audio (one
core = 1.0), measured offline on the same recorded hops (the process's CPU time, all threads).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

from avcall.pipelines.clock import SessionClock
from avcall.pipelines.echo import CANCELLERS, Aec3, Speex, cancel_clip, open_canceller
from avcall.pipelines.errors import InputError
from avcall.pipelines.frames import HOP_SAMPLES, SAMPLE_RATE, AudioFrame, Frame
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.sources.pulse import PulseSource
from avcall.pipelines.stage import Stage
from avcall.pipelines.stages.echo_control import EchoControl

from .sound_server import SPEAKERS, PrivateServer, private_pulseaudio

CANCELLER_DELAY = {"aec3": Aec3.delay, "speex": Speex.delay}
MIC = "bench_mic"
MIC_LAG_S = 0.06  # the microphone hears the loudspeaker this long after the sink's monitor does
NOISE_DBFS = -65.0
CONVERGED_DB = 20.0
WINDOW_S = 0.2
# (who, clip in ../shared/data/speech, start in seconds)
SCENE = (("far", "DeepSpeech_arctic_a0024.wav", 0.3),
         ("near", "pyroomacoustics_cmu_arctic_us_aew_a0001.wav", 4.6),
         ("near", "pyroomacoustics_cmu_arctic_us_aew_a0002.wav", 8.8),
         ("far", "DeepSpeech_LibriSpeech_61-70968-0002.wav", 9.2),
         ("far", "speechbrain_ASR_spk1_snt3.wav", 13.2))
SCENE_S = 16.2


@dataclass
class EchoScene:
    far: np.ndarray  # what the loudspeaker plays
    near: np.ndarray  # the user's voice at the microphone
    echo: np.ndarray  # the far end at the microphone, through the room
    noise: np.ndarray
    spans: dict[str, list[tuple[float, float]]]  # far_only, near_only, double_talk, in seconds
    rt60_s: float

    def mic(self, with_echo: bool = True) -> np.ndarray:
        return (self.near + self.noise + (self.echo if with_echo else 0.0)).astype(np.float32)


def room_impulse_response(rt60_s: float = 0.3) -> tuple[np.ndarray, float]:
    """A loudspeaker-to-microphone response in a furnished room (pyroomacoustics' image method) and its RT60."""
    import pyroomacoustics as pra

    room_size = [4.5, 3.8, 2.7]
    absorption, max_order = pra.inverse_sabine(rt60_s, room_size)
    room = pra.ShoeBox(room_size, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=max_order)
    room.add_source([2.0, 1.5, 1.0])  # the laptop's loudspeaker
    room.add_microphone([2.3, 1.6, 1.15])  # its microphone, 0.35 m away
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], np.float64)
    return rir, float(pra.experimental.measure_rt60(rir, fs=SAMPLE_RATE))


def _clip(path: Path) -> np.ndarray:
    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise InputError(f"{path}: {rate} Hz; the echo scene's clips are 16 kHz")
    audio = audio.mean(axis=1)
    return audio / (np.abs(audio).max() + 1e-9) * 0.5


def _active(x: np.ndarray, start: int) -> tuple[float, float]:
    """The span of `x` (placed at `start`) between its first and last sample above -40 dB of its peak."""
    loud = np.flatnonzero(np.abs(x) > np.abs(x).max() * 0.01)
    return (start + loud[0]) / SAMPLE_RATE, (start + loud[-1]) / SAMPLE_RATE


def make_scene(speech_dir: Path, *, seed: int = 0) -> EchoScene:
    n = int(SCENE_S * SAMPLE_RATE)
    far, near = np.zeros(n), np.zeros(n)
    talk: dict[str, list[tuple[float, float]]] = {"far": [], "near": []}
    for who, name, start_s in SCENE:
        x, start = _clip(speech_dir / name), int(start_s * SAMPLE_RATE)
        (far if who == "far" else near)[start:start + len(x)] += x
        talk[who].append(_active(x, start))
    rir, rt60 = room_impulse_response()
    echo = np.convolve(far, rir)[:n]
    # the echo as loud as the user: equal power over each one's speech
    gain = np.sqrt(_power(near, talk["near"]) / _power(echo, talk["far"]))
    noise = np.random.default_rng(seed).standard_normal(n) * 10 ** (NOISE_DBFS / 20)
    spans = {"far_only": [], "near_only": [], "double_talk": []}
    for f in talk["far"]:
        overlap = [(max(f[0], m[0]), min(f[1], m[1])) for m in talk["near"] if min(f[1], m[1]) > max(f[0], m[0])]
        spans["double_talk" if overlap else "far_only"].append(overlap[0] if overlap else f)
    spans["near_only"] = [m for m in talk["near"] if not any(min(f[1], m[1]) > max(f[0], m[0]) for f in talk["far"])]
    return EchoScene(far.astype(np.float32), near.astype(np.float32), (echo * gain).astype(np.float32),
                     noise.astype(np.float32), spans, rt60)


def _power(x: np.ndarray, spans: Sequence[tuple[float, float]]) -> float:
    return float(np.mean(np.concatenate([x[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] for a, b in spans]) ** 2))


class HopTap(Stage):
    """Keeps every audio hop that goes by, in order (the bench's view of the stream at one point)."""

    accepts = (AudioFrame,)

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.hops: list[np.ndarray] = []

    async def process(self, frame: Frame) -> Sequence[Frame]:
        self.hops.append(frame.samples)
        return [frame]

    def samples(self) -> np.ndarray:
        return np.concatenate(self.hops) if self.hops else np.zeros(0, np.float32)


def _play(server: PrivateServer, far: np.ndarray, mic: np.ndarray, fifo: Path, done: threading.Event,
          stop: threading.Event) -> None:
    """Real time, from one clock: the far end into the speakers sink, the microphone into the pipe source,
    `MIC_LAG_S` later; then silence until `stop` (a pipe source without a writer delivers nothing)."""
    import pasimple

    hop_bytes = 4 * HOP_SAMPLES
    lag = int(MIC_LAG_S * SAMPLE_RATE)
    mic = np.concatenate([np.zeros(lag, np.float32), mic])
    far = np.concatenate([far, np.zeros(lag, np.float32)])
    with server.use():
        speakers = pasimple.PaSimple(pasimple.PA_STREAM_PLAYBACK, pasimple.PA_SAMPLE_FLOAT32LE, 1, SAMPLE_RATE,
                                     app_name="call app", device_name="speakers", tlength=2 * hop_bytes,
                                     prebuf=hop_bytes, minreq=hop_bytes)
    with open(fifo, "wb", buffering=0) as pipe:
        start, k, silence = time.monotonic(), 0, bytes(hop_bytes)
        while not stop.is_set():
            delay = start + k * HOP_SAMPLES / SAMPLE_RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            i = k * HOP_SAMPLES
            if i + HOP_SAMPLES <= len(mic):
                speakers.write(far[i:i + HOP_SAMPLES].astype("<f4").tobytes())
                pipe.write(mic[i:i + HOP_SAMPLES].astype("<f4").tobytes())
            else:
                done.set()
                speakers.write(silence)
                pipe.write(silence)
            k += 1
    speakers.close()


async def record_through_server(server: PrivateServer, scene: EchoScene, canceller: str, *,
                                far_end: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """(microphone as read, after the echo control, far-end hops it rendered) for one pass of the scene;
    without `far_end` nothing plays and the microphone holds the user's voice and the noise floor only."""
    far = scene.far if far_end else np.zeros_like(scene.far)
    clock = SessionClock()
    with server.use():
        source = PulseSource(MIC, clock=clock)
        raw, out = HopTap("mic_in"), HopTap("echo_out")
        echo = EchoControl("speakers.monitor", clock=clock, canceller=canceller)
        pipeline = Pipeline([source], [raw, echo, out], live=True)
        run = asyncio.ensure_future(pipeline.run())
        await asyncio.sleep(0.5)  # the two recordings are open
        done, stop = threading.Event(), threading.Event()
        player = threading.Thread(target=_play, args=(server, far, scene.mic(far_end),
                                                      server.folder / "mic.fifo", done, stop))
        player.start()
        try:
            while not done.is_set() and player.is_alive():
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            pipeline.end_input()
            await run
        finally:
            stop.set()
            player.join()
    return raw.samples(), out.samples(), echo.far_hops


def _offset(recorded: np.ndarray, sent: np.ndarray) -> int:
    """Where `sent`'s first sample is in `recorded` (the pipe source passes samples through unchanged)."""
    from scipy.signal import correlate

    c = correlate(recorded, sent, mode="valid", method="fft") if len(recorded) >= len(sent) else \
        correlate(recorded, sent[:len(recorded) // 2], mode="valid", method="fft")
    return int(np.argmax(c))


def _cut(x: np.ndarray, offset: int, n: int) -> np.ndarray:
    y = np.zeros(n, np.float32)
    part = x[offset:offset + n]
    y[:len(part)] = part
    return y


def erle_db(mic: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(mic.astype(np.float64) ** 2) / max(np.sum(out.astype(np.float64) ** 2), 1e-20)))


def as_passed(near: np.ndarray, passed: np.ndarray, n_fft: int = 2048) -> np.ndarray:
    """`near` through the canceller's own linear filters: both high-pass the microphone (WebRTC's below
    ~80 Hz, speexdsp's DC notch), with a phase shift that alone costs a voice with the scene's low-frequency
    content 10-20 dB of SI-SDR. Their response is taken from `passed`, the no-echo run's output (the near
    end and the noise floor went in): the cross-spectrum over the auto-spectrum (Welch), applied to `near`."""
    from scipy.signal import csd, fftconvolve, welch

    _, sxx = welch(near, nperseg=n_fft)
    _, sxy = csd(near, passed, nperseg=n_fft)
    ir = np.roll(np.fft.irfft(sxy / np.maximum(sxx, 1e-20), n_fft), n_fft // 2)  # centred: taps either side
    return fftconvolve(near, ir)[n_fft // 2:n_fft // 2 + len(near)].astype(np.float32)


def si_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    r, e = reference.astype(np.float64), estimate.astype(np.float64)
    target = np.dot(e, r) / np.dot(r, r) * r
    return float(10 * np.log10(np.sum(target ** 2) / max(np.sum((e - target) ** 2), 1e-20)))


def _seg(x: np.ndarray, span: tuple[float, float]) -> np.ndarray:
    return x[int(span[0] * SAMPLE_RATE):int(span[1] * SAMPLE_RATE)]


def convergence_s(echo: np.ndarray, mic: np.ndarray, out: np.ndarray, span: tuple[float, float],
                  onset_s: float) -> tuple[float | None, list[tuple[float, float]]]:
    """(seconds from `onset_s` to the window after which every speech window of `span` has ERLE >=
    CONVERGED_DB, or None if it never settles; (time, ERLE) of each speech window)."""
    w = int(WINDOW_S * SAMPLE_RATE)
    a, b = int(span[0] * SAMPLE_RATE), int(span[1] * SAMPLE_RATE)
    peak = max(np.mean(echo[i:i + w] ** 2) for i in range(a, b - w + 1, w))
    windows = [(i / SAMPLE_RATE, erle_db(mic[i:i + w], out[i:i + w])) for i in range(a, b - w + 1, w)
               if np.mean(echo[i:i + w] ** 2) > peak * 1e-3]  # far-end speech: within 30 dB of its loudest
    for k, (t, _) in enumerate(windows):
        if all(e >= CONVERGED_DB for _, e in windows[k:]):
            return round(max(0.0, t - onset_s), 2), windows
    return None, windows


def measure(scene: EchoScene, raw: np.ndarray, out: np.ndarray, noecho_raw: np.ndarray | None,
            noecho_out: np.ndarray | None, delay: int) -> dict:
    """The figures of one canceller from its two runs, with the far end and without it (`noecho_*`; without
    that run, no near-end figures); `delay`: samples its output lags the microphone by."""
    mic = scene.mic()
    offset = _offset(raw, mic)
    mic_rec, out = _cut(raw, offset, len(mic)), _cut(out, offset + delay, len(mic))
    match = float(np.corrcoef(mic_rec, mic)[0, 1])  # the recorded microphone is the one sent
    far_only = scene.spans["far_only"]
    erle_spans = [erle_db(_seg(mic, s), _seg(out, s)) for s in far_only]
    erle_all = erle_db(np.concatenate([_seg(mic, s) for s in far_only]), np.concatenate([_seg(out, s) for s in far_only]))
    converged, windows = convergence_s(scene.echo, mic, out, far_only[0], far_only[0][0])
    figures = {
        "erle_far_only_db": round(erle_all, 1),
        "erle_per_far_only_span_db": [round(e, 1) for e in erle_spans],
        "convergence_s": converged,
        "erle_windows_first_span": [[round(t, 2), round(e, 1)] for t, e in windows],
        "recorded_mic_matches_sent": round(match, 4),
    }
    if noecho_raw is None or noecho_out is None:
        return figures
    noecho_out = _cut(noecho_out, _offset(noecho_raw, scene.mic(with_echo=False)) + delay, len(mic))
    dt = scene.spans["double_talk"]
    near = np.concatenate([_seg(as_passed(scene.near, noecho_out), s) for s in dt])
    return {**figures,
            "near_si_sdr_double_talk_db": round(si_sdr_db(near, np.concatenate([_seg(out, s) for s in dt])), 2),
            "near_si_sdr_no_far_end_db": round(si_sdr_db(near, np.concatenate([_seg(noecho_out, s) for s in dt])), 2),
            "near_si_sdr_unprocessed_db": round(si_sdr_db(np.concatenate([_seg(scene.near, s) for s in dt]),
                                                          np.concatenate([_seg(mic, s) for s in dt])), 2)}


def cpu_share(canceller: str, mic: np.ndarray, far: np.ndarray) -> float:
    """The canceller's CPU per second of audio, hop by hop over `mic` and `far` (the process's CPU time)."""
    c = open_canceller(canceller)
    start = time.process_time()
    cancel_clip(c, mic, far)
    used = time.process_time() - start
    c.close()
    return used / (len(mic) / SAMPLE_RATE)


def bench_echo(speech_dir: Path | None = None, cancellers: Sequence[str] = CANCELLERS,
               near_end: bool = True) -> dict:
    """The scene through the sound server, each of `cancellers` with the far end and, with `near_end`, again
    without it (for the near end's figures)."""
    from avcall.models.data.shared_data import shared_data_dir

    if speech_dir is None:
        data = shared_data_dir()
        if data is None:
            raise InputError("bench echo needs ../shared/data/speech (the scene's voices)")
        speech_dir = data / "speech"
    scene = make_scene(speech_dir)
    result: dict = {"scene": {"seconds": SCENE_S, "spans_s": scene.spans, "rt60_s": round(scene.rt60_s, 3),
                              "echo_to_near_db": 0.0, "noise_dbfs": NOISE_DBFS, "mic_lag_s": MIC_LAG_S,
                              "clips": [list(x) for x in SCENE]},
                    "sound_server": None, "cancellers": {}}
    with private_pulseaudio(SPEAKERS) as server:
        fifo = server.folder / "mic.fifo"  # the pipe source makes it
        server.pactl("load-module", "module-pipe-source", f"source_name={MIC}", f"file={fifo}",
                     "format=float32le", f"rate={SAMPLE_RATE}", "channels=1")
        result["sound_server"] = server.pactl("info").split("Server Version: ")[1].split("\n")[0]
        for name in cancellers:
            raw, out, far_hops = asyncio.run(record_through_server(server, scene, name))
            noecho_raw, noecho_out, _ = (asyncio.run(record_through_server(server, scene, name, far_end=False))
                                         if near_end else (None, None, None))
            figures = measure(scene, raw, out, noecho_raw, noecho_out, CANCELLER_DELAY[name])
            figures["far_hops_rendered"] = far_hops
            figures["cpu_core_share"] = round(cpu_share(name, scene.mic(), scene.far), 4)
            result["cancellers"][name] = figures
    return result
