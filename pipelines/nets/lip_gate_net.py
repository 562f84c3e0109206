"""The lip gate's net at run time (onnxruntime, no torch): per 10 ms hop, the chance that the voice heard is the
tracked face's, from the lips and the voice together.

What it sees (`GateInputs`, the same code in training and in a call):
- per video frame, the lip shape, opening and width in the tracker's normalised space minus this face's running
  mean (its rest mouth does not count) and their change since the last frame, scaled as the sync judge's; zeros
  while there is no usable face;
- per hop, the 40-band log-mel of the last 25 ms standardised by its running per-band mean and spread (the room
  and the microphone do not count), and the hop's level over the running noise floor (`LevelFloor`).
A GRU carries what it has seen from hop to hop (its state in, its state out): one small step per hop, and it
learns itself when lips and voice go together (the lips lead the sound of a phrase by 100-300 ms), which the
gate's logistic scorer needed the sync judge and hand-made features for.
"""

from __future__ import annotations

import numpy as np

from ..frames import LipFeatures
from .spectrum import LIPS_VOICE_MEL, N_FFT
from .sync_features import LIP_DIM

WEIGHTS = "lip_gate_net.onnx"
N_MELS = LIPS_VOICE_MEL.n_mels
INPUTS = 2 * LIP_DIM + N_MELS + 1  # lips (centred, change), log-mel, level over the floor
LIP_ALPHA = 0.02  # per video frame: the face's running mean mouth over about 2 s
MEL_ALPHA = 0.005  # per hop: the voice's running per-band mean and spread over about 2 s
FLOOR_RISE_DB_PER_S = 3.0
HOP_S = 0.01


class LevelFloor:
    """A hop's level (dB) and the running noise floor under it: down at once to a quieter hop, up slowly."""

    def __init__(self) -> None:
        self.floor: float | None = None

    def __call__(self, samples: np.ndarray) -> tuple[float, float]:
        """(the hop's level, its level over the floor), dB."""
        level = 10 * np.log10(float(np.mean(np.square(samples, dtype=np.float64))) + 1e-12)
        if self.floor is None or level < self.floor:
            self.floor = level
        else:
            self.floor += FLOOR_RISE_DB_PER_S * HOP_S
        return level, level - self.floor


class GateInputs:
    """The net's input, hop by hop: `lips(frame or None)` per video frame, `hop(samples, over_floor)` per 10 ms."""

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None  # the face's running mean lip vector
        self.last: np.ndarray | None = None
        self.lip = np.zeros(2 * LIP_DIM, np.float32)
        self.tail = np.zeros(N_FFT, np.float32)
        self.mel_mean: np.ndarray | None = None
        self.mel_var = np.ones(N_MELS)

    def lips(self, f: LipFeatures | None) -> None:
        """A video frame's lips; None: no usable face (no face, turned away, low confidence)."""
        if f is None:
            self.lip[:] = 0
            self.last = None
            return
        v = np.concatenate([f.shape.ravel(), [f.opening, f.width]]).astype(np.float64)
        self.mean = v.copy() if self.mean is None else self.mean + LIP_ALPHA * (v - self.mean)
        change = np.zeros_like(v) if self.last is None else v - self.last
        self.last = v
        self.lip = (np.concatenate([v - self.mean, change]) * 20.0).astype(np.float32)

    def hop(self, samples: np.ndarray, over_floor_db: float) -> np.ndarray:
        self.tail = np.concatenate([self.tail, samples])[-N_FFT:]
        mel = LIPS_VOICE_MEL(self.tail[None])[0].astype(np.float64)
        if self.mel_mean is None:
            self.mel_mean = mel.copy()
        else:
            d = mel - self.mel_mean
            self.mel_mean += MEL_ALPHA * d
            self.mel_var += MEL_ALPHA * (d * d - self.mel_var)
        voice = (mel - self.mel_mean) / np.sqrt(self.mel_var + 1e-2)
        return np.concatenate([self.lip, voice, [min(max(over_floor_db, 0.0), 40.0) / 40.0]]).astype(np.float32)


class LipGateNet:
    """The shipped net (models/weights/lip_gate_net.onnx): `step(inputs, state)` -> (chances per hop, state).
    One session per process, shared by every call (each call keeps its own state)."""

    def __init__(self, path=None) -> None:
        from ..runtime import require_weights, shared_session

        self.session = shared_session(path or require_weights(WEIGHTS), threads=1)
        self.hidden = int(self.session.get_inputs()[1].shape[-1])

    def new_state(self) -> np.ndarray:
        return np.zeros((1, 1, self.hidden), np.float32)

    def step(self, inputs: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """inputs (hops, INPUTS) -> (the chance per hop that the voice is the face's, the new state)."""
        logit, state = self.session.run(None, {"inputs": inputs[None].astype(np.float32), "state": state})
        return 1.0 / (1.0 + np.exp(-logit[0])), state
