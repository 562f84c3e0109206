"""`avcall eval emotion`: the command; the evaluation is avcall.models.emotion.evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path

from avcall.models.emotion.evaluate import evaluate_emotion, format_table
from avcall.pipelines.errors import InputError

from avcall.models.data.shared_data import shared_data_dir

from .data import write_report


def add_arguments(p) -> None:
    p.add_argument("--data", type=Path, metavar="DIR", help="labelled data laid out like "
                   "../shared/data/emotion_labelled (labels.tsv + files); default that folder")
    p.add_argument("--split", default="dev", help="which split to score (default dev)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="report JSON to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the pairing and the noise (default 0)")
    p.add_argument("--no-fallback", action="store_true", help="score the fusion nets themselves when a modality "
                   "is missing (default: as the live stage runs them, falling back to the remaining net)")
    p.add_argument("--no-plots", action="store_true", help="skip the confusion-matrix PNGs")
    p.add_argument("--clips", type=Path, metavar="DIR", help="also run the live stage on the media files in DIR "
                   "(default ../shared/data/emotion when it is there) and list what it says of each")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


MEDIA = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".wav", ".flac", ".m4a", ".mp3", ".ogg"}


def stage_on_clip(path: Path) -> dict:
    """The live stage over one media file (tracker, EmotionReader), offline: what it said, summed up."""
    import asyncio

    import numpy as np

    from avcall.pipelines.nets.emotion import CLASSES
    from avcall.pipelines.runner import Pipeline
    from avcall.pipelines.sources.file import FileSource
    from avcall.pipelines.stages.emotion import EmotionReader
    from avcall.pipelines.stages.face_tracker import FaceTracker

    source = FileSource(path)
    readings: list[dict] = []

    def keep(frame) -> None:
        if getattr(frame, "kind", "") == "emotion":
            readings.append(frame.data)

    stages = ([FaceTracker()] if source.info.has_video else []) + [EmotionReader(live=False)]
    asyncio.run(Pipeline([source], stages, live=False, on_output=keep).run())
    seen = [r for r in readings if r["sources"]]
    mean = np.mean([[r["probs"][c] for c in CLASSES] for r in seen], 0) if seen else np.full(len(CLASSES), 1 / len(CLASSES))
    kinds = sorted({"+".join(r["sources"]) for r in seen})
    return {"file": path.name, "readings": len(readings), "sources": kinds or ["none"],
            "leading": CLASSES[int(np.argmax(mean))], "mean_probs": {c: round(float(p), 3) for c, p in zip(CLASSES, mean)},
            "mean_confidence": round(float(np.mean([r["confidence"] for r in seen])) if seen else 0.0, 3)}


def run(args: argparse.Namespace) -> int:
    data = args.data
    if data is None:
        shared = shared_data_dir()
        data = shared / "emotion_labelled" if shared else None
    if data is None or not (Path(data) / "labels.tsv").is_file():
        raise InputError(f"no labelled emotion data at {data} (give --data DIR with labels.tsv)")
    report = evaluate_emotion(Path(data), args.split, args.out, seed=args.seed, fallback=not args.no_fallback,
                              plots=not args.no_plots, progress=not args.quiet)
    print("UAR (unweighted average recall) on label-matched face/voice pairs from different people:")
    print(format_table(report["summary"]))
    clips = args.clips
    if clips is None and shared_data_dir() is not None and (shared_data_dir() / "emotion").is_dir():
        clips = shared_data_dir() / "emotion"
    if clips is not None:
        report["clips"] = []
        for f in sorted(Path(clips).iterdir()):
            if f.suffix.lower() not in MEDIA:
                continue
            try:
                row = stage_on_clip(f)
                print(f"{row['file']}: {row['leading']} ({row['mean_confidence']:.2f}) from {row['sources']}")
            except InputError as err:  # a damaged file is listed with what is wrong with it
                row = {"file": f.name, "error": str(err)}
                print(f"{f.name}: not read ({err})")
            report["clips"].append(row)
    write_report(args.out, report)  # with the clips, and the command and commit
    print(f"wrote {args.out}")
    return 0
