"""A candidate net for the evaluations' tests: a shipped ONNX file with every float weight scaled, so that it
keeps the shipped net's interface but gives other figures."""

from __future__ import annotations

from pathlib import Path


def scaled_weights(source: Path, target: Path, factor: float) -> Path:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.dtype.kind == "f":
            tensor.CopyFrom(numpy_helper.from_array((array * factor).astype(array.dtype), tensor.name))
    onnx.save(model, str(target))
    return target
