"""Backends whose native rate is 48 kHz with 10 ms frames (RNNoise, DeepFilterNet3): each 16 kHz hop is
resampled up (one 480-sample frame), run through the library, and resampled back. The delay is the
library's own plus the two resampling filters'."""

from __future__ import annotations

import ctypes

import numpy as np

from .base import Resampler3, Suppressor

FRAME_48K = 480
_FLOATS = ctypes.POINTER(ctypes.c_float)


class At48k(Suppressor):
    library_delay_48k: int  # samples at 48 kHz the library's output lags its input by (measured)
    scale: float = 1.0  # what the library wants full scale to be (RNNoise works at 16-bit scale)
    _state = None  # the library's state for this stream (a pointer), made by `_create`

    def __init__(self) -> None:
        self.resampler = Resampler3()
        delay_48k = self.library_delay_48k + 2 * self.resampler.delay_48k
        if delay_48k % 3:
            raise ValueError(f"{self.name}: a delay of {delay_48k} samples at 48 kHz is not whole at 16 kHz")
        self.delay = delay_48k // 3
        self._in = np.zeros(FRAME_48K, np.float32)
        self._out = np.zeros(FRAME_48K, np.float32)

    def reset(self) -> None:
        self.resampler.reset()
        self._reset_library()

    def _process(self, hop: np.ndarray) -> np.ndarray:
        self._in[:] = self.resampler.up(hop) * self.scale
        self._frame(self._in.ctypes.data_as(_FLOATS), self._out.ctypes.data_as(_FLOATS))
        return self.resampler.down(self._out / self.scale)

    def _reset_library(self) -> None:
        self.close()
        self._state = self._create()

    def close(self) -> None:
        """Free the library's state (also when the stream is garbage-collected)."""
        if self._state is not None:
            self._free(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()

    def _create(self):
        raise NotImplementedError

    def _free(self, state) -> None:
        raise NotImplementedError

    def _frame(self, src, dst) -> None:
        """The library on one 480-sample frame (float pointers)."""
        raise NotImplementedError
