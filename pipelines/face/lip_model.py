"""Phones -> visemes -> mouth-shape trajectories, in the tracker's normalised lip space.

The lip-shape model is a few numbers fitted on what the tracker measures on real talking faces
(`avcall corpus fit-lips`): a mean mouth, its principal modes (PCA of the 40 normalised lip points),
and per viseme a target in mode space. Coarticulation follows Cohen & Massaro's dominance model: every
phone pulls the mouth towards its viseme's target with a dominance that peaks at the phone's centre and
decays with distance, longer ahead of the phone than after it (the mouth anticipates), stronger for lip
closures (p b m) and rounding (w uw ow) than for tongue sounds, whose shape the neighbours decide. The
blend never snaps: it is a smooth mixture of targets. With the fitted dominance shape the mouth starts
towards a 100 ms vowel about 85 ms before it sounds (tests/models: 50-120 ms); per speaker, `lead` (the
lips' head start over the aligned phones) and the reach vary around the fitted values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..frames import LIP_POINTS
from .mesh import INNER_BOTTOM as INNER_BOTTOM_MESH
from .mesh import INNER_TOP as INNER_TOP_MESH
from .mesh import LEFT_CORNER, LIP_INDICES, RIGHT_CORNER
from .lip_track import LIP_FPS, LipTrack
from .phonemes import VISEME_INDEX, VISEMES, Timing

MODEL_PATH = Path(__file__).with_name("lip_model.json")

# Positions in the 40-point lip shape (LIP_INDICES order) of the points lip_features measures with
_POS = {int(m): i for i, m in enumerate(LIP_INDICES)}
CORNER_L, CORNER_R = _POS[LEFT_CORNER], _POS[RIGHT_CORNER]
INNER_TOP, INNER_BOTTOM = _POS[INNER_TOP_MESH], _POS[INNER_BOTTOM_MESH]

# How strongly each viseme holds the lips (dominance magnitude): closures and rounding dominate,
# tongue-made sounds borrow their lip shape from their neighbours.
DOMINANCE = {"sil": 0.6, "pbm": 4.0, "fv": 3.0, "th": 1.2, "tdnsz": 0.5, "kg": 0.4, "l": 0.6, "shch": 1.5,
             "r": 1.2, "wuw": 3.0, "ow": 2.0, "aa": 1.5, "eh": 1.0, "iy": 1.2}


def shape_measures(shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Opening and width of (..., 40, 2) shapes, as lip_features measures them."""
    opening = np.linalg.norm(shape[..., INNER_BOTTOM, :] - shape[..., INNER_TOP, :], axis=-1)
    width = np.linalg.norm(shape[..., CORNER_R, :] - shape[..., CORNER_L, :], axis=-1)
    return opening, width


ANTICIPATION = 1.3  # dominance reaches this much further ahead of a phone than after it
SHARPNESS = 3.0  # exponent of the dominance function; fitted on real clips (1, 1.5, 2, 3, 4 tried)


def dominance_weights(timing: Timing, times: np.ndarray, lead: float, tau: float,
                      anticipation: float = ANTICIPATION) -> np.ndarray:
    """(len(times), len(VISEMES)) blend weights, rows summing to 1."""
    w = np.zeros((len(times), len(VISEMES)))
    for p in timing.phones:
        centre = 0.5 * (p.start + p.end) - lead
        half = max(0.5 * (p.end - p.start), 0.02)
        dt = times - centre
        scale = np.where(dt < 0, (half + tau) * anticipation, half + tau)  # reaches further ahead
        w[:, VISEME_INDEX[p.viseme]] += DOMINANCE[p.viseme] * np.exp(-np.abs(dt / scale) ** SHARPNESS)
    total = w.sum(axis=1, keepdims=True)
    w[total[:, 0] == 0, VISEME_INDEX["sil"]] = 1.0
    return w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)


@dataclass
class Speaker:
    """How one synthetic speaker's mouth differs: size, articulation, timing, tracker noise."""

    scale: np.ndarray  # (2,) x and y scale of the mean mouth
    gain: float  # articulation: < 1 mumbles, > 1 over-articulates
    lead: float  # seconds the lips run ahead of the sound
    tau: float  # coarticulation reach, seconds
    jitter: float  # tracker noise, in units of the fitted residual std
    identity: np.ndarray  # (J,) the rest mouth's offset from the mean, in units of the fitted identity spread

    @classmethod
    def draw(cls, rng: np.random.Generator, model: "LipModel") -> "Speaker":
        """Around the fitted model: speakers differ in mouth size, articulation, timing and reach."""
        return cls(scale=rng.uniform(0.9, 1.1, 2), gain=float(rng.uniform(0.75, 1.25)),
                   lead=model.lead + float(rng.uniform(-0.02, 0.04)), tau=model.tau * float(rng.uniform(0.7, 1.5)),
                   jitter=float(rng.uniform(0.5, 1.5)), identity=rng.normal(0, 1, len(model.identity_std)))


@dataclass
class LipModel:
    mean: np.ndarray  # (40, 2)
    modes: np.ndarray  # (K, 40, 2), unit norm
    mode_std: np.ndarray  # (K,) spread of each mode over real frames
    targets: np.ndarray  # (len(VISEMES), K) viseme targets in mode space
    residual_std: np.ndarray  # (K,) frame-to-frame spread the model does not explain (tracker noise)
    identity_modes: np.ndarray  # (J, 40, 2) how real speakers' rest mouths differ (PCA of per-clip means)
    identity_std: np.ndarray  # (J,)
    lead: float
    tau: float
    fit: dict

    @property
    def k(self) -> int:
        return len(self.mode_std)

    def coefficients(self, timing: Timing, times: np.ndarray, lead: float | None = None,
                     tau: float | None = None) -> np.ndarray:
        w = dominance_weights(timing, times, self.lead if lead is None else lead, self.tau if tau is None else tau)
        return w @ self.targets

    def shapes(self, coeffs: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
        base = self.mean if mean is None else mean
        return base[None] + np.tensordot(coeffs, self.modes, axes=1)

    def track(self, timing: Timing, n_frames: int, rng: np.random.Generator, speaker: Speaker | None = None,
              fps: float = LIP_FPS, artefacts: bool = True) -> LipTrack:
        """The lip track of one speaker saying `timing`, frame i at i / fps on the audio's clock, with
        the tracker's imperfections (jitter, glitches, dropped frames, missing-face stretches) when
        `artefacts`."""
        speaker = speaker or Speaker.draw(rng, self)
        times = np.arange(n_frames) / fps
        coeffs = self.coefficients(timing, times, speaker.lead, speaker.tau) * speaker.gain
        rest = self.mean + np.tensordot(speaker.identity * self.identity_std, self.identity_modes, axes=1)
        present = np.ones(n_frames, bool)
        if artefacts:
            coeffs += rng.normal(0, 1, coeffs.shape) * self.residual_std * speaker.jitter
            coeffs, present = tracker_artefacts(coeffs, rng, self.mode_std)
        shapes = self.shapes(coeffs, mean=rest) * np.r_[speaker.scale][None, None, :]
        shapes[~present] = 0.0
        opening, width = shape_measures(shapes)
        confidence = np.where(present, rng.uniform(0.85, 0.99, n_frames), 0.0)
        return LipTrack(shapes.astype(np.float32), opening.astype(np.float32), width.astype(np.float32),
                        present, confidence.astype(np.float32), fps)

    def to_json(self) -> dict:
        return {"visemes": list(VISEMES), "mean": np.round(self.mean, 5).tolist(),
                "modes": np.round(self.modes, 5).tolist(), "mode_std": np.round(self.mode_std, 5).tolist(),
                "targets": np.round(self.targets, 5).tolist(),
                "residual_std": np.round(self.residual_std, 5).tolist(),
                "identity_modes": np.round(self.identity_modes, 5).tolist(),
                "identity_std": np.round(self.identity_std, 5).tolist(),
                "lead": round(self.lead, 4), "tau": round(self.tau, 4), "fit": self.fit}

    def save(self, path: Path = MODEL_PATH) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> "LipModel":
        d = json.loads(Path(path).read_text())
        if d["visemes"] != list(VISEMES):
            raise ValueError(f"{path}: fitted for other visemes; run `avcall corpus fit-lips` again")
        a = {k: np.array(d[k], np.float64) for k in ("mean", "modes", "mode_std", "targets", "residual_std",
                                                     "identity_modes", "identity_std")}
        return cls(a["mean"].reshape(LIP_POINTS, 2), a["modes"].reshape(-1, LIP_POINTS, 2), a["mode_std"],
                   a["targets"], a["residual_std"], a["identity_modes"].reshape(-1, LIP_POINTS, 2), a["identity_std"],
                   float(d["lead"]), float(d["tau"]), d.get("fit", {}))


def tracker_artefacts(coeffs: np.ndarray, rng: np.random.Generator, mode_std: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """What a real tracker does to a trajectory now and then: a one-frame glitch (a blink of the mesh),
    a dropped frame (the previous one repeated), a stretch with no face (head turned, hand in front)."""
    coeffs = coeffs.copy()
    n = len(coeffs)
    present = np.ones(n, bool)
    for i in np.flatnonzero(rng.random(n) < 0.01):  # glitches
        coeffs[i] += rng.normal(0, 1.5, coeffs.shape[1]) * mode_std
    for i in np.flatnonzero(rng.random(n) < 0.02):  # dropped frames
        if i > 0:
            coeffs[i] = coeffs[i - 1]
    if n > 10 and rng.random() < 0.15:  # a missing-face stretch of 0.2-1.5 s
        length = int(rng.integers(5, min(38, n // 2) + 1))
        start = int(rng.integers(0, n - length + 1))
        present[start:start + length] = False
    return coeffs, present
