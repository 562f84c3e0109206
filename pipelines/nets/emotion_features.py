"""What the emotion nets see, in numpy (the runtime imports this; no torch).

Face: a grey 64x64 crop, the face from brows to chin, eyes level (`align_face` makes it from the tracker's
landmarks; the labelled images already are such crops), scaled to [-1, 1] as mini-Xception was trained.

Voice: 64-band log-mel of the last WINDOW_S seconds at a 10 ms hop, minus the window's peak level (so the
speaker's distance to the microphone does not matter), then minus the speaker's usual voiced spectrum
(`SpeakerNorm`, running over the call): the net sees how the voice departs from this speaker's own, which is
what carries emotion across speakers and microphones.
"""

from __future__ import annotations

import cv2
import numpy as np

from .spectrum import EMOTION_MEL, HOP, N_FFT, SAMPLE_RATE, frames

FACE_SIZE = 64
N_MELS = EMOTION_MEL.n_mels
WINDOW_S = 2.0
WINDOW_FRAMES = int(WINDOW_S * SAMPLE_RATE / HOP)  # 200
WINDOW_SAMPLES = WINDOW_FRAMES * HOP


def voice_window(audio: np.ndarray) -> np.ndarray:
    """(N_MELS, WINDOW_FRAMES) features of the last WINDOW_S of `audio` (zeros before a shorter start)."""
    x = np.asarray(audio, np.float32)[-WINDOW_SAMPLES:]
    x = np.concatenate([np.zeros(WINDOW_SAMPLES - len(x), np.float32), x])
    logmel = EMOTION_MEL(frames(x, N_FFT, WINDOW_FRAMES))
    peak = np.percentile(logmel.max(1), 95)
    return np.maximum(logmel - peak, -8.0).T.astype(np.float32) / 2.0 + 2.0  # about [-2, 2]


VOICED_UNITS = 0.75  # 15 dB in voice_window's units (log10 power / 2)


def voiced_mean(window: np.ndarray) -> np.ndarray | None:
    """(N_MELS,) the mean of a voice_window's frames within 15 dB of its loudest, None when it has none."""
    energy = window.max(0)
    keep = energy > energy.max() - VOICED_UNITS
    return window[:, keep].mean(1) if keep.any() else None


class SpeakerNorm:
    """The speaker's mean voiced spectrum over the voice heard so far (a plain average for the first
    `memory_s` seconds, then a running one), subtracted from each window. Before any voice, a window is
    normalised by its own voiced mean."""

    def __init__(self, memory_s: float = 30.0) -> None:
        self.memory_s = memory_s
        self.mean: np.ndarray | None = None
        self.heard_s = 0.0

    def update(self, window: np.ndarray, seconds: float) -> None:
        m = voiced_mean(window)
        if m is None:
            return
        self.heard_s += seconds
        a = seconds / min(self.heard_s, self.memory_s)
        self.mean = m if self.mean is None else (1 - a) * self.mean + a * m

    def apply(self, window: np.ndarray) -> np.ndarray:
        return normalise(window, self.mean)


def normalise(window: np.ndarray, speaker_mean: np.ndarray | None) -> np.ndarray:
    """`window` minus the speaker's mean voiced spectrum (its own when none is known)."""
    mean = speaker_mean if speaker_mean is not None else voiced_mean(window)
    return (window - mean[:, None]).astype(np.float32) if mean is not None else window


def face_input(grey: np.ndarray) -> np.ndarray:
    """(1, 64, 64) float32 in [-1, 1] from a grey uint8 face crop of any size."""
    if grey.shape != (FACE_SIZE, FACE_SIZE):
        grey = cv2.resize(grey, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
    return ((grey.astype(np.float32) / 255.0 - 0.5) * 2.0)[None]


# mediapipe face-mesh indices: the eye corners and the chin
_LEFT_EYE, _RIGHT_EYE, _CHIN = (33, 133), (362, 263), 152


def align_face(image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A grey FACE_SIZE crop of the tracked face, eyes level, framed like the labelled crops (FER2013/CK+48:
    the eyes about 40% down, the face filling the square)."""
    pts = np.asarray(landmarks, np.float32)[:, :2]
    left, right = pts[list(_LEFT_EYE)].mean(0), pts[list(_RIGHT_EYE)].mean(0)
    eyes = (left + right) / 2
    angle = np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))
    iod = float(np.linalg.norm(right - left))
    side = max(2.2 * iod, 1.15 * float(np.linalg.norm(pts[_CHIN] - eyes)) / 0.6, 8.0)
    scale = FACE_SIZE / side
    m = cv2.getRotationMatrix2D((float(eyes[0]), float(eyes[1])), angle, scale)
    m[:, 2] += np.array([FACE_SIZE * 0.5, FACE_SIZE * 0.4]) - eyes  # eyes to (0.5, 0.4) of the crop
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.warpAffine(grey, m, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
