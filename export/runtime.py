"""The one place that creates onnxruntime sessions, and where the shipped weights are.

Providers: TensorRT, then CUDA, when this onnxruntime build has them and `prefer_gpu` is set; the CPU always
closes the list (and is all there is otherwise). Threads suit live use: `threads` intra-op threads (1 by
default: a 10 ms hop of a small recurrent net is too little work to split), one inter-op thread, sequential
execution, no spinning threads burning a core between hops, and every graph optimisation.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import onnxruntime as ort

from avcall.pipelines.errors import InputError

WEIGHTS_PACKAGE = "avcall.models"  # the shipped ONNX files and manifest.json live in its weights/ folder
MANIFEST = "manifest.json"
TRT_CACHE = Path(os.environ.get("AVCALL_TRT_CACHE", Path.home() / ".cache" / "avcall" / "tensorrt"))


def providers(prefer_gpu: bool = True) -> list:
    """Execution providers, best first, among those this onnxruntime build has."""
    available = ort.get_available_providers()
    chosen: list = []
    if prefer_gpu and "TensorrtExecutionProvider" in available:
        TRT_CACHE.mkdir(parents=True, exist_ok=True)  # engines are built once per model and GPU, then reused
        chosen.append(("TensorrtExecutionProvider", {"trt_engine_cache_enable": True,
                                                     "trt_engine_cache_path": str(TRT_CACHE)}))
    if prefer_gpu and "CUDAExecutionProvider" in available:
        chosen.append("CUDAExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return chosen


def session_options(threads: int = 1) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle between hops, not spinning
    opts.log_severity_level = 3  # errors only
    return opts


def create_session(path: str | Path, *, threads: int = 1, prefer_gpu: bool = True) -> ort.InferenceSession:
    """An onnxruntime session for the model at `path`; a missing or damaged file is a one-line InputError
    naming it (at start, before a call runs)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} is missing")
    try:
        return ort.InferenceSession(str(path), sess_options=session_options(threads),
                                    providers=providers(prefer_gpu))
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own kinds (InvalidProtobuf, Fail, ...)
        reason = str(err).split(" failed:")[-1].split(" : ")[-1].strip()[:120]
        raise InputError(f"model file {path} cannot be loaded: damaged or not an ONNX model ({reason})") from None


def weights_dir() -> Path:
    """$AVCALL_WEIGHTS_DIR (to try other weights without touching the package), else models/weights/ in the
    checkout (editable install) or in the installed package."""
    override = os.environ.get("AVCALL_WEIGHTS_DIR")
    return Path(override) if override else Path(str(resources.files(WEIGHTS_PACKAGE))) / "weights"


def weights_path(name: str) -> Path:
    """The shipped file `name` (e.g. "avse_av.onnx", "manifest.json"); it may not exist yet."""
    return weights_dir() / name


def require_weights(name: str) -> Path:
    """The shipped file `name`, or a one-line InputError naming what is missing."""
    path = weights_path(name)
    if not path.is_file():
        raise InputError(f"no shipped weights: {path} is missing (export a trained model with "
                         f"`python -m avcall.export.onnx_export`)")
    return path
