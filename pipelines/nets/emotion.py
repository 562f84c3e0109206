"""The shipped emotion nets through onnxruntime (no torch): face crops and voice windows to probabilities and
embeddings, and the fusion methods on those."""

from __future__ import annotations

import numpy as np

from ..runtime import model_entry, require_weights, shared_session

CLASSES: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprise")

# Russell's circumplex, roughly where each class sits (valence, arousal in [-1, 1]); a reading's valence and
# arousal are these weighted by its probabilities.
CIRCUMPLEX = np.array([
    (0.0, 0.0),     # neutral
    (0.8, 0.5),     # happy
    (-0.7, -0.4),   # sad
    (-0.6, 0.8),    # angry
    (-0.6, 0.7),    # fearful
    (-0.7, 0.3),    # disgust
    (0.3, 0.8),     # surprise
], np.float32)


def valence_arousal(probs: np.ndarray) -> tuple[float, float]:
    v, a = np.asarray(probs, np.float32) @ CIRCUMPLEX
    return float(v), float(a)


FACE, VOICE = "emotion_face.onnx", "emotion_voice.onnx"
METHODS = ("face", "voice", "concat", "avef", "tfn", "late")
N = len(CLASSES)


class EmotionModels:
    """Sessions for the face and voice nets and the fusion heads, one thread each by default."""

    def __init__(self, threads: int = 1) -> None:
        self.face_session = shared_session(require_weights(FACE), threads=threads)
        self.voice_session = shared_session(require_weights(VOICE), threads=threads)
        entry = model_entry(VOICE)
        self.late_w_voice = float(entry.get("late_w_voice", 0.5))
        self.shipped_fusion = str(entry.get("shipped_fusion", "late"))
        self._fusion: dict = {}

    def face(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 1, 64, 64) face inputs -> probabilities (B, 7), embeddings (B, 128)."""
        p, z = self.face_session.run(None, {"face": np.asarray(crops, np.float32)})
        return p, z

    def voice(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 64, 200) voice windows -> probabilities (B, 7), embeddings (B, 64)."""
        p, z = self.voice_session.run(None, {"mel": np.asarray(windows, np.float32)})
        return p, z

    def fuse(self, method: str, voice: tuple[np.ndarray, np.ndarray] | None,
             face: tuple[np.ndarray, np.ndarray] | None, fallback: bool = True) -> np.ndarray:
        """The fused probabilities (7,) of one reading from its segments: `voice` = (probs (S, 7), embeddings
        (S, 64)) of the voice windows, `face` = (probs (S', 7), embeddings (S', 128)) of the face crops;
        either may be None (missing). Neither: uniform. With `fallback`, a fusion method with one modality
        missing is that modality's net; without, the fusion net sees zeros and the presence flags."""
        uniform = np.full(N, 1.0 / N, np.float32)
        if method in ("voice", "face"):  # the single nets
            x = voice if method == "voice" else face
            return x[0].mean(0) if x is not None else uniform
        if voice is None and face is None:
            return uniform
        if method == "late" or (fallback and (voice is None or face is None)):
            # late fusion, or one modality left: the nets' probabilities, weighted (see README, "Emotion")
            w = self.late_w_voice if voice is not None and face is not None else float(voice is not None)
            return sum(wt * x[0].mean(0) for wt, x in ((w, voice), (1 - w, face)) if x is not None and wt > 0
                       ).astype(np.float32)
        session = self._fusion.get(method)
        if session is None:
            session = self._fusion[method] = shared_session(require_weights(f"emotion_fusion_{method}.onnx"))
        segments = max(len(voice[1]) if voice is not None else 1, len(face[1]) if face is not None else 1)
        za = _segments(voice[1] if voice is not None else None, segments, 64)
        zv = _segments(face[1] if face is not None else None, segments, 128)
        present = np.array([[voice is not None, face is not None]], np.float32)
        return session.run(None, {"voice_embedding": za, "face_embedding": zv, "present": present})[0][0]


def _segments(z: np.ndarray | None, n: int, dim: int) -> np.ndarray:
    """(1, n, dim): the embeddings repeated to n segments (cycled), zeros when missing."""
    if z is None:
        return np.zeros((1, n, dim), np.float32)
    idx = np.arange(n) % len(z)
    return np.asarray(z, np.float32)[idx][None]
