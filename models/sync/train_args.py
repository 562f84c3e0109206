"""`avcall train sync` arguments, defined without importing torch (so `avcall --help` works without it);
`avcall train talking-face` shares them."""

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
