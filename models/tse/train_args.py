"""`avcall train tse` arguments, defined without importing torch (so `avcall --help` works without it)."""

from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--voices", type=Path, required=True, help="the packed voices (python -m avcall.models.tse.pack): "
                   "speech_train and av_train utterances in one array, speaker-disjoint validation marked")
    p.add_argument("--lips", type=Path, default=None, help="with --design lips: the faces' lip embeddings per 40 ms "
                   "(python -m avcall.models.tse.pack_lips; may be the --voices file)")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoint.pt, train.log, model.pt (run again "
                   "with the same folder to resume)")
    p.add_argument("--design", choices=("separate", "lips"), default="separate",
                   help="separate: a two-speaker separator (PIT); lips: stream 0 is the voice of the given lips")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=1.5, help="length of each mixture")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--val-batch", type=int, default=16)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop after this long, resumable (0: run to --steps)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: a shared CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, default=None, help="start from the matching weights of a checkpoint.pt or "
                   "model.pt (e.g. design lips from a separate run)")
    p.add_argument("--export", action="store_true", help="then write the streaming ONNX into the run folder "
                   "(tse_sep.onnx or tse_lips.onnx)")
