"""`avcall train talking-face` and `talking-face-finetune` arguments, defined without importing torch: the sync
judge's, and the GRU's size."""

from __future__ import annotations

from pathlib import Path

from ..sync.train_args import add_arguments as add_common, add_real_arguments


def add_arguments(p) -> None:
    add_common(p, batch=32, shipped="talking_face.onnx", corpus_required=False)
    p.add_argument("--real", type=Path, metavar="DIR", help="train on real talking faces instead of a corpus: a "
                   "folder laid out like ../shared/data/av_train (MANIFEST.tsv, clips/); the tracker's lips are the "
                   "targets, validation speakers held out, the best checkpoint on them kept (research-use data: the "
                   "manifest entry names the sources)")
    p.add_argument("--tracks", type=Path, metavar="DIR", help="with --real: where the tracker's output is cached "
                   "(one .npz per clip; made on the first run, resumable)")
    p.add_argument("--grid-share", type=float, default=0.3, help="with --real: share of the crops from GRID's one speaker")
    p.add_argument("--hidden", type=int, default=128, help="GRU units")
    p.add_argument("--viseme-weight", type=float, default=3e-4,
                   help="weight of the training-only viseme head's cross-entropy beside the lips' squared error")


def add_finetune_arguments(p) -> None:
    """`avcall train talking-face-finetune`: the shipped voice-to-lips net fine-tuned on real mouths
    (models/talking_face/finetune.py)."""
    add_real_arguments(p, "crops")
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--smooth", type=int, default=3, help="video frames of the real targets' moving average")
    p.add_argument("--real-corr", type=float, default=0.05, help="weight of (1 - r) of the opening in each real crop")
    p.add_argument("--gain-most", type=float, default=2.0, help="with --export: the largest output gain calibrated")
    p.add_argument("--export", type=Path, metavar="DIR", help="then write DIR/talking_face.onnx (parity checked, its "
                   "gain calibrated on av_train's training clips), for `avcall eval talking-face` with "
                   "AVCALL_TALKING_FACE_CANDIDATE=DIR/talking_face.onnx")
    p.add_argument("--alpha", default="1", help="with --export: interpolate the best checkpoint with the shipped net: "
                   "a number, or 'val' to choose it on the validation speakers")
