"""`avcall demo`: the pipeline on a clip that needs no camera and no download.

Today it tracks the face and lips of a real talking-face clip from `../shared/data` (or, without it, of a
synthetic flash-and-click clip it writes itself) into `./avcall-demo/`. The noisy "call" made from the
project's own rendered portrait, with enhancement, captions and report.html, comes with the corpus and
app issues.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from avcall.pipelines.sinks.mp4 import Mp4Sink
from avcall.pipelines.sources.synthetic import synthetic_frames

from .process import ProcessConfig, run_process
from .shared_data import shared_data_dir

DEMO_CLIP = "talking_faces/EDTalk_uncrop_Obama.mp4"


async def write_synthetic_clip(path: Path, seconds: float = 4.0) -> None:
    sink = Mp4Sink(path, video_size=(320, 240), fps=25)
    await sink.start()
    try:
        for frame in synthetic_frames(seconds, events=[0.5, 1.5, 2.5, 3.5]):
            await sink.process(frame)
    finally:
        await sink.stop()
        sink.shutdown_worker()


def run_demo(outdir: Path = Path("avcall-demo"), clip: Path | None = None) -> str:
    data = shared_data_dir()
    if clip is None and data is not None and (data / DEMO_CLIP).exists():
        clip = data / DEMO_CLIP
    if clip is None:
        outdir.mkdir(parents=True, exist_ok=True)
        clip = outdir / "input.mp4"
        asyncio.run(write_synthetic_clip(clip))
    result = run_process(ProcessConfig(input=clip, outdir=outdir))
    telemetry = json.loads((outdir / "telemetry.json").read_text())
    tracker = telemetry["stages"].get("face_tracker", {}).get("service_ms", {})
    lines = [f"avcall demo: {clip}",
             f"  {result.media_seconds:.1f} s processed; face found in {result.face_frames}/{result.video_frames} frames",
             f"  tracking: {tracker.get('p50', 0):.1f} ms per frame (p50), {tracker.get('p95', 0):.1f} ms (p95)",
             f"  outputs in {outdir}/: annotated.mp4 (mesh and lips drawn), lips.npz, telemetry.json"]
    return "\n".join(lines)
