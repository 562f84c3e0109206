"""The sync judge at run time (onnxruntime, no torch): embeddings of a clip's lips and voice, the distance
curve over audio-video offsets of +-15 video frames, the offset with a confidence (as LSE-D / LSE-C are
defined for SyncNet: the mean distance at the best offset, and the median of the curve minus its minimum),
and a per-frame speaking score.

Offsets are in video frames (40 ms at 25 fps): an offset of +k means the voice comes k frames after the
lips (the audio is late); `avcall sync --fix` shifts the audio back by that much.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .sync_features import WINDOW, audio_centres, audio_windows, lip_frames, log_mel, windows

LIPS_WEIGHTS = "sync_lips.onnx"
AUDIO_WEIGHTS = "sync_audio.onnx"
MAX_OFFSET = 15


@dataclass
class SyncResult:
    offset_frames: int
    confidence: float  # LSE-C: median distance minus the minimum
    min_distance: float  # LSE-D at the best offset
    curve: list[float]  # mean distance per offset, from -MAX_OFFSET to +MAX_OFFSET
    frames: int  # video frames that counted

    @property
    def offset_ms(self) -> float:
        return self.offset_frames * 40.0


class SyncJudge:
    def __init__(self, lips_path: str | Path | None = None, audio_path: str | Path | None = None) -> None:
        from ..runtime import require_weights, shared_session

        self.lips = shared_session(lips_path or require_weights(LIPS_WEIGHTS), threads=1)
        self.audio = shared_session(audio_path or require_weights(AUDIO_WEIGHTS), threads=1)

    def embed(self, lip_windows: np.ndarray, mel_windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lips = self.lips.run(None, {"lips": lip_windows})[0] if len(lip_windows) else np.zeros((0, 64), np.float32)
        audio = self.audio.run(None, {"mel": mel_windows})[0] if len(mel_windows) else np.zeros((0, 64), np.float32)
        return lips, audio

    def curve(self, lips: np.ndarray, opening: np.ndarray, width: np.ndarray, present: np.ndarray,
              audio: np.ndarray, max_offset: int = MAX_OFFSET) -> tuple[np.ndarray, int]:
        """Mean lip-voice embedding distance at each offset -max..+max over the frames with a face."""
        lip = lip_frames(lips, opening, width, present)
        mel = log_mel(audio)
        ok = np.asarray(present, bool)
        lw, aw, ts = windows(lip, mel, 0)
        half = WINDOW // 2
        keep = np.array([ok[t - half:t + half + 1].all() for t in ts], bool) if len(ts) else np.zeros(0, bool)
        lw, ts = lw[keep], ts[keep]
        le, _ = self.embed(lw, aw[:0])
        # the voice's window at offset o for frame t is the one centred on t + o: each embedded once, for
        # every offset (not once per offset: 31 times the audio net's work)
        centres = audio_centres(mel)
        if len(ts):
            centres = centres[(centres >= ts.min() - max_offset) & (centres <= ts.max() + max_offset)]
        _, voice = self.embed(lw[:0], audio_windows(mel, centres))
        at = {int(c): i for i, c in enumerate(centres)}
        out = []
        for o in range(-max_offset, max_offset + 1):
            pick = [i for i, t in enumerate(ts) if t + o in at]
            if not pick:
                out.append(np.nan)
                continue
            ae = voice[[at[int(ts[i]) + o] for i in pick]]
            out.append(float(np.linalg.norm(le[pick] - ae, axis=1).mean()))
        return np.array(out), len(ts)

    def speaking_score(self, lips, opening, width, present, audio, max_offset: int = MAX_OFFSET) -> float:
        """How much this face's lips agree with the voice in sync, beyond chance: the median distance over
        the offsets minus the distance at offset 0 (about 0 for a face that is not the one speaking)."""
        curve, frames = self.curve(lips, opening, width, present, audio, max_offset)
        if frames == 0 or np.isnan(curve[max_offset]):
            return 0.0
        return float(np.nanmedian(curve) - curve[max_offset])

    def judge(self, lips, opening, width, present, audio, max_offset: int = MAX_OFFSET) -> SyncResult:
        curve, frames = self.curve(lips, opening, width, present, audio, max_offset)
        if frames == 0 or np.all(np.isnan(curve)):
            return SyncResult(0, 0.0, float("nan"), curve.tolist(), 0)
        best = int(np.nanargmin(curve))
        return SyncResult(best - max_offset, float(np.nanmedian(curve) - curve[best]), float(curve[best]),
                          [round(float(c), 4) for c in curve], frames)
