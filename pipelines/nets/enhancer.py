"""The enhancer at run time: the exported ONNX models stepped one 10 ms hop at a time. No torch here.

Per hop: the last two hops (20 ms, sqrt-Hann) -> spectrum -> log power -> mask from the models -> masked
spectrum -> overlap-add. Hop k's call returns the samples of hop k-1: they are final only once frame k is
in. So the output lags the input by one hop (HOP samples) of content, and a sample leaves 20 ms after it
arrived at worst (the design latency, WINDOW); `enhance_clip` drops that lag so its output lines up with
its input.

Two models, both stepped every hop so that each one's recurrent state is warm when it is needed: the
audio-visual one (lips as zeros, "face absent", when there is no face: it was trained that way) and its
audio-only twin. Their masks are mixed, `w * av + (1 - w) * ao`, with `w` moving towards 1 while a face
is present and towards 0 while it is not, over CROSSFADE_S: the voice never clicks when the face comes or
goes. Either model may be missing: with only the AV model it runs alone (zero lips without a face), with
only the AO model the lips are ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..runtime import create_session
from ..frames import SAMPLE_RATE, LipFeatures
from .enhancer_features import _WIN, HOP, LIP_DIM, N_FREQ, WINDOW, lip_stream, log_power

AV_WEIGHTS = "avse_av.onnx"  # shipped in models/weights/
AO_WEIGHTS = "avse_ao.onnx"
LATENCY_MS = 1000 * WINDOW / SAMPLE_RATE  # design (algorithmic) latency: 20 ms
DELAY = HOP  # samples the output content lags the input by (enhance_clip takes it off)
CROSSFADE_S = 0.1  # AV <-> AO model switch when the face comes or goes
OUTPUTS = ["mask", "state_out"]


def lip_mean_shape(session=None) -> np.ndarray:
    """The (40, 2) mean mouth the lip stream is centred on: the one recorded in the model file at export,
    else the shipped lip model's (what training used)."""
    if session is not None:
        value = session.get_modelmeta().custom_metadata_map.get("lip_mean")
        if value:
            return np.asarray(json.loads(value), np.float64).reshape(-1, 2)
    from ..face.lip_model import LipModel

    return LipModel.load().mean


def lip_vector(features: LipFeatures | None, mean_shape: np.ndarray) -> np.ndarray | None:
    """One row of features.lip_stream from a LipFeatures frame; None when there is no face."""
    if features is None or not features.present:
        return None
    out = np.empty(LIP_DIM, np.float32)
    out[:80] = ((np.asarray(features.shape, np.float64) - mean_shape) * 5.0).reshape(-1)
    out[80] = features.opening * 5.0
    out[81] = (features.width - 1.0) * 5.0
    out[82] = 1.0
    return out


class _Net:
    """One ONNX enhancer stepped hop by hop; its recurrent state is carried here."""

    def __init__(self, session) -> None:
        self.session = session
        inputs = {i.name: i for i in session.get_inputs()}
        self.use_lips = "lips" in inputs
        layers, _, hidden = inputs["state_in"].shape
        self.state_shape = (int(layers), 1, int(hidden))
        self.no_lips = np.zeros((1, 1, LIP_DIM), np.float32)
        self.reset()

    def reset(self) -> None:
        self.state = np.zeros(self.state_shape, np.float32)

    def step(self, logpow: np.ndarray, lips: np.ndarray | None) -> np.ndarray:
        """logpow (1, 1, N_FREQ), lips (LIP_DIM,) or None -> mask (N_FREQ,)."""
        feeds = {"logpow": logpow, "state_in": self.state}
        if self.use_lips:
            feeds["lips"] = self.no_lips if lips is None else np.asarray(lips, np.float32).reshape(1, 1, LIP_DIM)
        mask, self.state = self.session.run(OUTPUTS, feeds)
        return mask.reshape(N_FREQ)


class StreamingEnhancer:
    """`process_hop` for live use (160 samples in, 160 out, one hop later), `enhance_clip` for whole clips;
    the clip path is the hop path in a loop, so both give the same samples."""

    def __init__(self, av_path: str | Path | None, ao_path: str | Path | None, *, crossfade_s: float = CROSSFADE_S,
                 threads: int = 1, prefer_gpu: bool = False) -> None:
        # prefer_gpu is off by default: one stream's hop is ~1 MFLOP, less than a GPU round trip costs
        if av_path is None and ao_path is None:
            raise ValueError("StreamingEnhancer needs the AV model, the AO model or both")
        self._setup(create_session(av_path, threads=threads, prefer_gpu=prefer_gpu) if av_path else None,
                    create_session(ao_path, threads=threads, prefer_gpu=prefer_gpu) if ao_path else None,
                    crossfade_s)

    @classmethod
    def from_sessions(cls, av_session, ao_session, *, crossfade_s: float = CROSSFADE_S) -> StreamingEnhancer:
        """Over sessions made elsewhere (one session per model per process, shared by streams), or
        stand-ins with onnxruntime's `get_inputs`/`run`/`get_modelmeta`."""
        self = cls.__new__(cls)
        self._setup(av_session, ao_session, crossfade_s)
        return self

    def _setup(self, av_session, ao_session, crossfade_s: float) -> None:
        self.av = _Net(av_session) if av_session is not None else None
        self.ao = _Net(ao_session) if ao_session is not None else None
        self.lip_mean = lip_mean_shape(self.av.session if self.av else None)
        self.fade_step = 1.0 if crossfade_s <= 0 else min(1.0, HOP / (crossfade_s * SAMPLE_RATE))
        self.reset()

    @property
    def reads_lips(self) -> bool:
        return self.av is not None

    def reset(self) -> None:
        """A new stream: empty buffers, fresh states."""
        self._frame = np.zeros(WINDOW, np.float32)  # the last two hops of input
        self._tail = np.zeros(WINDOW - HOP, np.float32)  # overlap-add: the second half of the last frame
        self.av_weight: float | None = None  # share of the AV model's mask; set by the first hop
        for net in (self.av, self.ao):
            if net is not None:
                net.reset()

    def _analyse(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, np.float32).reshape(-1)
        if len(x) != HOP:
            raise ValueError(f"a hop is {HOP} samples, got {len(x)}")
        self._frame[:-HOP] = self._frame[HOP:]
        self._frame[-HOP:] = x
        return np.fft.rfft(self._frame * _WIN).astype(np.complex64)  # as features.stft

    def _synthesise(self, spec: np.ndarray) -> np.ndarray:
        frame = np.fft.irfft(spec, n=WINDOW).astype(np.float32) * _WIN  # as features.istft
        out = self._tail + frame[:HOP]
        self._tail = frame[HOP:].copy()
        return out

    def _weight(self, face: bool) -> float:
        if self.ao is None:
            return 1.0
        if self.av is None:
            return 0.0
        target = 1.0 if face else 0.0
        if self.av_weight is None:  # the stream starts here: nothing to fade from
            self.av_weight = target
        elif self.av_weight < target:
            self.av_weight = min(target, self.av_weight + self.fade_step)
        else:
            self.av_weight = max(target, self.av_weight - self.fade_step)
        return self.av_weight

    def process_hop(self, samples: np.ndarray, lips: np.ndarray | None = None) -> np.ndarray:
        """One hop in (HOP float32 samples, and the lip stream's row for it or None without a face), the
        enhanced previous hop out."""
        spec = self._analyse(samples)
        logpow = log_power(spec).reshape(1, 1, N_FREQ)
        face = lips is not None and lips[82] > 0.5
        w = self._weight(face)
        lips = lips if face else None
        mask_av = self.av.step(logpow, lips) if self.av is not None else None
        mask_ao = self.ao.step(logpow, None) if self.ao is not None else None
        if mask_av is None:
            mask = mask_ao
        elif mask_ao is None:
            mask = mask_av
        else:
            mask = w * mask_av + (1.0 - w) * mask_ao
        return self._synthesise(spec * mask.astype(np.float32))

    def passthrough_hop(self, samples: np.ndarray) -> np.ndarray:
        """One hop with no model run (a unit mask): the input, one hop later, exactly as process_hop lines
        it up. The synthesis window fades between enhanced and passed-through hops; the models' states stay
        where they were."""
        return self._synthesise(self._analyse(samples))

    def enhance_clip(self, audio: np.ndarray, lips=None, audio_offset: float = 0.0) -> np.ndarray:
        """A whole clip, as many samples out as in, aligned with the input (the one-hop lag taken off).
        `lips`: a LipTrack (frame i at i / fps - audio_offset seconds of audio time) or None. Resets the
        stream before and after."""
        audio = np.asarray(audio, np.float32).reshape(-1)
        n = len(audio)
        hops = -(-n // HOP) + 1  # one hop more, to bring out the last one
        x = np.zeros(hops * HOP, np.float32)
        x[:n] = audio
        stream = None
        if lips is not None and self.reads_lips:
            stream = lip_stream(lips.lips, lips.opening, lips.width, lips.face_present, lips.fps, hops,
                                offset=audio_offset, mean_shape=self.lip_mean)
        self.reset()
        out = np.empty_like(x)
        for k in range(hops):
            row = stream[k] if stream is not None and stream[k, 82] > 0.5 else None
            out[k * HOP:(k + 1) * HOP] = self.process_hop(x[k * HOP:(k + 1) * HOP], row)
        self.reset()
        return out[DELAY:DELAY + n]

