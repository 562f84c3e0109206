"""`avcall train sync` arguments, defined without importing torch (so `avcall --help` works without it);
`avcall train talking-face` shares them; `sync-finetune` and `talking-face-finetune` share `add_real_arguments`."""

from __future__ import annotations

from pathlib import Path


def add_arguments(p, *, batch: int = 128, shipped: str = "sync_lips.onnx and sync_audio.onnx",
                  corpus_required: bool = True) -> None:
    p.add_argument("--corpus", type=Path, required=corpus_required, help="corpus folder from `avcall corpus make`")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoint.pt, train.log, model.pt); resumes")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop after this long, resumable (0: run to --steps)")
    p.add_argument("--export", action="store_true", help=f"then write {shipped} into the shipped weights "
                   "(models/weights/, or AVCALL_WEIGHTS_DIR) with the manifest entries")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_real_arguments(p, piece: str) -> None:
    """What both fine-tunes on real talking faces take (sync-finetune, talking-face-finetune): `piece` is what
    a batch is made of (windows, crops)."""
    p.add_argument("--tracks", type=Path, required=True, metavar="DIR", help="the tracker's cache of "
                   "../shared/data/av_train (one .npz per clip, made by `avcall train talking-face --real --tracks "
                   "DIR`)")
    p.add_argument("--out", type=Path, required=True, help="run folder: model.pt (the best on the validation "
                   "speakers), train.log")
    p.add_argument("--corpus", type=Path, help=f"a corpus (avcall corpus make) whose {piece} are mixed into each batch")
    p.add_argument("--steps", type=int, default=1500, help="0: no training, only --export of the run's model.pt")
    p.add_argument("--real-share", type=float, default=0.5, help=f"share of each batch's {piece} from av_train")
    p.add_argument("--grid-share", type=float, default=0.3, help=f"share of the real {piece} from GRID's one speaker")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop after this long (0: run to --steps)")


def add_finetune_arguments(p) -> None:
    """`avcall train sync-finetune`: the shipped judge fine-tuned on real pairs (models/sync/finetune.py)."""
    add_real_arguments(p, "windows")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--export", type=Path, metavar="DIR", help="then write the best encoders as sync_lips.onnx and "
                   "sync_audio.onnx into DIR (parity checked); `avcall eval sync --candidate DIR` scores them")
