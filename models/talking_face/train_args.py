"""`avcall train talking-face` arguments, defined without importing torch: the sync judge's, and the GRU's size."""

from __future__ import annotations

from ..sync.train_args import add_arguments as add_common


def add_arguments(p) -> None:
    add_common(p, batch=32, shipped="talking_face.onnx")
    p.add_argument("--hidden", type=int, default=128, help="GRU units")
    p.add_argument("--viseme-weight", type=float, default=3e-4,
                   help="weight of the training-only viseme head's cross-entropy beside the lips' squared error")
