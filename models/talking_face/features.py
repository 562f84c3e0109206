"""The voice-to-lips net's training targets: the tracker's lips on the net's 10 ms grid."""

from __future__ import annotations

import numpy as np

from avcall.pipelines.nets.voice_to_lips import HOP


def lip_targets(lips: np.ndarray, opening: np.ndarray, width: np.ndarray, present: np.ndarray, mean_shape: np.ndarray,
                hops: int, fps: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """Lip features at 25 fps linearly interpolated onto the 10 ms grid: (hops, OUT_DIM), and a (hops,)
    mask of the hops with a face on both sides."""
    t = (np.arange(hops) + 1) * HOP / 16_000 * fps  # in video frames
    i0 = np.clip(np.floor(t).astype(int), 0, len(lips) - 1)
    i1 = np.clip(i0 + 1, 0, len(lips) - 1)
    w = (t - np.floor(t))[:, None].astype(np.float32)
    feats = np.concatenate([(np.asarray(lips, np.float32) - mean_shape.astype(np.float32)).reshape(len(lips), -1),
                            np.asarray(opening, np.float32)[:, None], np.asarray(width, np.float32)[:, None]], 1)
    out = (1 - w) * feats[i0] + w * feats[i1]
    ok = np.asarray(present, bool)
    return out.astype(np.float32), ok[i0] & ok[i1] & (t < len(lips))
