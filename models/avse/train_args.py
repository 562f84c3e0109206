"""`avcall train avse` arguments, defined without importing torch (so `avcall --help` works without it)."""

from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--corpus", type=Path, help="corpus folder from `avcall corpus make`")
    p.add_argument("--pool", type=Path, help="a pool packed by avcall.models.avse.pool.pack_pool (for a machine without TTS) instead of --corpus")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoint.pt, train.log, model.pt "
                   "(run again with the same folder to resume)")
    p.add_argument("--audio-only", action="store_true", help="the audio-only twin (no lip branch)")
    p.add_argument("--arch", choices=["avcall", "avdcnn"], default="avcall", help="avdcnn: the AVDCNN baseline")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--workers", type=int, default=2, help="data-loading processes")
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop after this long, resumable (0: run to --steps)")
    p.add_argument("--init", type=Path, help="start from the weights of an earlier run's model.pt (same arch and size)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when torch sees a GPU)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
