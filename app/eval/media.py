"""Image helpers the evaluations and the benchmarks share."""

from __future__ import annotations

import cv2
import numpy as np


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Fit `image` into `size` keeping its aspect ratio, black borders around."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - resized.shape[0]) // 2, (w - resized.shape[1]) // 2
    out[y:y + resized.shape[0], x:x + resized.shape[1]] = resized
    return out
