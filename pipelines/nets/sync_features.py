"""What the sync judge sees, in numpy (the runtime imports this; no torch): 40-band log-mel frames of the
voice at a 10 ms hop (four per video frame at 25 fps) and per video frame the lip shape, opening and width
in the tracker's normalised space, centred on the clip's own mean mouth (so a speaker's rest mouth does not
count, only how it moves). A window is WINDOW video frames (0.2 s) and the audio frames over the same time.
"""

from __future__ import annotations

import numpy as np

from ..frames import VIDEO_FPS as FPS
from .spectrum import HOP, LIPS_VOICE_MEL, N_FFT, SAMPLE_RATE, frames

N_MELS = LIPS_VOICE_MEL.n_mels
AUDIO_PER_VIDEO = round(SAMPLE_RATE / FPS / HOP)  # 4 audio frames per video frame
WINDOW = 5  # video frames in a window: 0.2 s
LIP_DIM = 82


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(frames, N_MELS): frame i covers [i*HOP - N_FFT/2, i*HOP + N_FFT/2), centred on i*HOP; per-clip
    standardised (a recording's level and colour do not matter)."""
    out = LIPS_VOICE_MEL(frames(audio, N_FFT, centred=True))
    return ((out - out.mean(0)) / (out.std(0) + 1e-3)).astype(np.float32)


def lip_frames(lips: np.ndarray, opening: np.ndarray, width: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(frames, LIP_DIM): shape, opening and width per video frame minus the clip's mean over the frames with
    a face (zeros where there is none), scaled to about unit spread."""
    feats = np.concatenate([np.asarray(lips, np.float32).reshape(len(lips), -1),
                            np.asarray(opening, np.float32)[:, None], np.asarray(width, np.float32)[:, None]], 1)
    ok = np.asarray(present, bool)
    if ok.any():
        feats = feats - feats[ok].mean(0)
    feats[~ok] = 0
    return feats * 20.0


def windows(lip: np.ndarray, mel: np.ndarray, offset: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every video frame t whose window fits: the lip window (N, LIP_DIM, WINDOW) centred on t and the
    audio window (N, N_MELS, WINDOW * AUDIO_PER_VIDEO) centred on video frame t + offset; and the ts."""
    half = WINDOW // 2
    fits = set(audio_centres(mel).tolist())
    ts = np.array([t for t in range(half, len(lip) - half) if t + offset in fits], int)
    if len(ts) == 0:
        return np.zeros((0, LIP_DIM, WINDOW), np.float32), audio_windows(mel, ts), ts
    lw = np.stack([lip[t - half:t + half + 1].T for t in ts])
    return lw.astype(np.float32), audio_windows(mel, ts + offset), ts


def audio_centres(mel: np.ndarray) -> np.ndarray:
    """The video frames an audio window can be centred on: those whose window lies within `mel`."""
    half = WINDOW // 2
    return np.arange(half, (len(mel) - WINDOW * AUDIO_PER_VIDEO) // AUDIO_PER_VIDEO + half + 1)


def audio_windows(mel: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The audio windows (N, N_MELS, WINDOW * AUDIO_PER_VIDEO) centred on video frames `centres`."""
    a_len, start = WINDOW * AUDIO_PER_VIDEO, (np.asarray(centres, int) - WINDOW // 2) * AUDIO_PER_VIDEO
    if len(start) == 0:
        return np.zeros((0, N_MELS, a_len), np.float32)
    return np.stack([mel[s:s + a_len].T for s in start]).astype(np.float32)
