"""The one place that creates onnxruntime sessions, and where the shipped weights are.

Providers: TensorRT, then CUDA, when this onnxruntime build has them and `prefer_gpu` is set; the CPU always
closes the list (and is all there is otherwise). Threads suit live use: `threads` intra-op threads (1 by
default: a 10 ms hop of a small recurrent net is too little work to split), one inter-op thread, sequential
execution, no spinning threads burning a core between hops, and every graph optimisation.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata, resources
from pathlib import Path

import onnxruntime as ort

from .errors import InputError

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
                         f"`python -m avcall.models.avse.export` or the model family's `avcall train ... --export`)")
    return path


# --------------------------------------------------------------------------------------------- what ships
_lock = threading.Lock()
_sessions: dict[tuple, ort.InferenceSession] = {}
_batched: dict[int, object] = {}  # id(shared session) -> its BatchedSession
SHARE_SESSIONS = True  # False: a session per stream, as before (`bench serve --sessions` measures both)
_verified: dict[tuple, bool] = {}


def manifest() -> dict:
    """The installed models/weights/manifest.json (not $AVCALL_WEIGHTS_DIR's): the project's own models
    under "models", the weights it takes from pinned packages under "packages" (each with its distribution,
    version, licence and files' sha256)."""
    path = Path(str(resources.files(WEIGHTS_PACKAGE))) / "weights" / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the weights manifest {path}: {err}") from None


def model_entry(name: str) -> dict:
    """The manifest's entry for our model file `name` in the folder its weights come from (the installed one,
    or $AVCALL_WEIGHTS_DIR's, where a candidate is tried), {} where there is none."""
    path = weights_path(MANIFEST)
    try:
        return json.loads(path.read_text()).get("models", {}).get(name, {}) if path.is_file() else {}
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the weights manifest {path}: {err}") from None


def shipped(name: str) -> bool:
    """The one answer to "does `name` ship here": a model file of ours ("avse_ao.onnx") present in the
    weights folder, or a packaged model ("dtln") whose distribution is installed with all its files (their
    sha256 is checked at load, not here)."""
    if name.endswith(".onnx"):
        return weights_path(name).is_file()
    package = manifest().get("packages", {}).get(name)
    if package is None:
        return False
    try:
        dist = metadata.distribution(package["distribution"])
    except metadata.PackageNotFoundError:
        return False
    return all(Path(dist.locate_file(f)).is_file() for f in package["files"])


def package_weights(name: str) -> dict[str, Path]:
    """The files of the packaged model `name` ({path in the distribution: where it is}), each checked against
    the sha256 the manifest pins; a missing package, a missing file or a changed one is a one-line
    InputError naming it."""
    package = manifest().get("packages", {}).get(name)
    if package is None:
        raise InputError(f"{name}: not a packaged model of this avcall (models/weights/manifest.json)")
    want = f"{package['distribution']}=={package['version']}"
    try:
        dist = metadata.distribution(package["distribution"])
    except metadata.PackageNotFoundError:
        raise InputError(f"{name}: its weights come with the package {want}, which is not installed "
                         f"(scripts/setup.sh installs it)") from None
    found = {}
    for rel, sha in package["files"].items():
        path = Path(dist.locate_file(rel))
        if not path.is_file():
            raise InputError(f"{name}: weight file {path} is missing (reinstall {want})")
        key = (str(path), path.stat().st_mtime_ns, sha)
        with _lock:
            ok = _verified.get(key)
        if ok is None:
            ok = _sha256(path) == sha
            with _lock:
                _verified[key] = ok
        if not ok:
            raise InputError(f"{name}: weight file {path} is damaged or not the pinned one (sha256 differs; "
                             f"installed {dist.version}, expected {want})")
        found[rel] = path
    return found



@contextmanager
def sessions_shared(shared: bool) -> Iterator[None]:
    """Within it, whether new streams share one session per model (True, the default) or open their own (False:
    `bench serve --sessions` measures both)."""
    global SHARE_SESSIONS
    before, SHARE_SESSIONS = SHARE_SESSIONS, shared
    try:
        yield
    finally:
        SHARE_SESSIONS = before


def shared_session(path: str | Path, *, threads: int = 1, prefer_gpu: bool = True) -> ort.InferenceSession:
    """One session per model file per process, shared by every stream that runs it (onnxruntime's `run` is
    safe to call from several threads at once; each stream keeps its own recurrent state)."""
    path = Path(path)
    if not SHARE_SESSIONS:
        return create_session(path, threads=threads, prefer_gpu=prefer_gpu)
    stat = path.stat() if path.is_file() else None  # a file written anew is a new model
    key = (str(path.resolve()), stat and (stat.st_mtime_ns, stat.st_size), int(threads), bool(prefer_gpu))
    with _lock:
        session = _sessions.get(key)
    if session is None:
        session = create_session(path, threads=threads, prefer_gpu=prefer_gpu)
        with _lock:
            session = _sessions.setdefault(key, session)
    return session


def batched_session(path: str | Path, batch_axes: dict[str, int], *, threads: int = 1, prefer_gpu: bool = False):
    """The shared session of `path` behind one BatchedSession per process (pipelines/nets/batch.py): every
    stream that runs this model is stepped in one batched call per hop (on a GPU, where the batch pays most,
    with `prefer_gpu`)."""
    from .nets.batch import BatchedSession

    session = shared_session(path, threads=threads, prefer_gpu=prefer_gpu)
    if not SHARE_SESSIONS:
        return session
    with _lock:
        batched = _batched.get(id(session))
        if batched is None:
            batched = _batched[id(session)] = BatchedSession(session, batch_axes)
    return batched


def session_count() -> int:
    """How many shared sessions this process holds (tests count them)."""
    with _lock:
        return len(_sessions)


def session_report() -> dict:
    """What this process shares, for a worker's status: the model file of each shared session (one per model
    unless a model runs with other settings) and, for each batched one, how many model calls carried how many
    stream steps (`largest`: the most streams one call stepped together)."""
    with _lock:
        files = [Path(key[0]).name for key in _sessions]
        by_id = {id(session): Path(key[0]).name for key, session in _sessions.items()}
        batched = {by_id.get(sid, str(sid)): {"calls": b.stats.calls, "rows": b.stats.rows,
                                              "largest": b.stats.largest} for sid, b in _batched.items()}
    return {"sessions": sorted(files), "batched": batched}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
