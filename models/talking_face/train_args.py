"""`avcall train talking-face` arguments, defined without importing torch."""

from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--corpus", type=Path, required=True, help="corpus folder from `avcall corpus make`")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoint.pt, train.log, model.pt); resumes")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--max-minutes", type=float, default=0.0)
    p.add_argument("--export", action="store_true", help="then write talking_face.onnx into the shipped weights "
                   "(models/weights/, or AVCALL_WEIGHTS_DIR) with its manifest entry")
    p.add_argument("-q", "--quiet", action="store_true")
