"""`avcall train talking-face` arguments, defined without importing torch: the sync judge's, and the GRU's size."""

from __future__ import annotations

from pathlib import Path

from ..sync.train_args import add_arguments as add_common


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
