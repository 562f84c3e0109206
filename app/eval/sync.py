"""`avcall eval sync`: the sync judge on the talking-face clips with their voices moved by 0, +-2, +-5 and +-10
video frames, the offset it finds against the truth; `--candidate DIR` scores a judge not yet shipped (its
sync_lips.onnx and sync_audio.onnx) beside the shipped one in the same run."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from avcall.models.data.shared_data import shared_data_dir, talking_face_clips

from ..sync import judge_accuracy
from .data import check_data_dir, write_report

GRID_LRS2 = ("GRID", "LRS2")  # read speech to the camera: the stricter subset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, metavar="DIR", help="folder with talking_faces/ (default ../shared/data)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="report JSON to write")
    p.add_argument("--candidate", type=Path, metavar="DIR", help="also score the judge in DIR (sync_lips.onnx, "
                   "sync_audio.onnx) in the same run; OUT then holds both, keyed shipped and candidate")


def summarise(report: dict) -> dict:
    rows = report["rows"]
    sub = [r for r in rows if r["clip"].startswith(GRID_LRS2)]
    share = lambda rs, key: round(float(np.mean([r[key] for r in rs])), 4) if rs else None  # noqa: E731
    return {"pairs": len(rows), "within_1": share(rows, "ok"), "relative_within_1": share(rows, "ok_relative"),
            "grid_lrs2_pairs": len(sub), "grid_lrs2_within_1": share(sub, "ok"),
            "grid_lrs2_relative_within_1": share(sub, "ok_relative")}


def run(args) -> int:
    from avcall.pipelines.runtime import require_weights
    from avcall.pipelines.nets.sync_judge import AUDIO_WEIGHTS, LIPS_WEIGHTS, SyncJudge

    clips = talking_face_clips(check_data_dir(args.data if args.data is not None else shared_data_dir()))
    if args.candidate is None:
        report = judge_accuracy(clips) | {"summary": None}
        report["summary"] = summarise(report)
        write_report(args.out, report)
        print(f"offset within one frame: {report['offset_within_1_frame']:.3f} of {report['pairs']} (clip, shift) "
              f"pairs; {report['relative_within_1_frame']:.3f} counting each clip's own offset; wrote {args.out}")
        return 0
    judges = {"shipped": SyncJudge(require_weights(LIPS_WEIGHTS), require_weights(AUDIO_WEIGHTS)),
              "candidate": SyncJudge(args.candidate / LIPS_WEIGHTS, args.candidate / AUDIO_WEIGHTS)}
    report = {}
    for name, judge in judges.items():
        r = judge_accuracy(clips, judge)
        report[name] = {"summary": summarise(r), "rows": r["rows"]}
        print(name, report[name]["summary"], flush=True)
    write_report(args.out, report)
    print(f"wrote {args.out}")
    return 0
