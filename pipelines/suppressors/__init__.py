"""Noise suppressors behind one streaming interface (`base.Suppressor`), chosen by name.

`DEFAULT` is what `--enhance` runs: the best measured against its CPU cost on a 2-core machine running the
whole call (bench/enhance_eval.json, the README's table). BACKENDS lists them in the order users are offered
them (`features.enhancers()`: those that ship on this machine); `open_suppressor(name)` makes a new stream of
one (the weights are checked and the sessions shared, see pipelines/runtime.py): the speech enhancer stage
opens its own when it starts and on a switch.
"""

from __future__ import annotations

from avcall.pipelines.errors import InputError

from .base import Suppressor

DEFAULT = "dtln"
# name -> (what users are told, the manifest entry that decides whether it ships)
BACKENDS: dict[str, tuple[str, str]] = {
    "dtln": ("DTLN noise suppressor", "dtln"),
    "dfn3": ("DeepFilterNet3 noise suppressor", "dfn3"),
    "rnnoise": ("RNNoise noise suppressor", "rnnoise"),
    "avcall-ao": ("avcall's own audio-only enhancer", "avse_ao.onnx"),
}


def describe(name: str) -> str:
    return BACKENDS[name][0]


def open_suppressor(name: str = DEFAULT) -> Suppressor:
    """A new stream of the backend `name`; an unknown name or weights that are missing or damaged are a
    one-line InputError."""
    if name not in BACKENDS:
        raise InputError(f"unknown enhancer {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "dtln":
        from .dtln import DTLN

        return DTLN()
    if name == "dfn3":
        from .dfn3 import DFN3

        return DFN3()
    if name == "rnnoise":
        from .rnnoise import RNNoise

        return RNNoise()
    from .avcall_ao import AvcallAO

    return AvcallAO()
