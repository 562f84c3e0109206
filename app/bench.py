"""`avcall bench`: measured speed, written as JSON. Benchmarks, not tests: figures drift on shared machines.

`tracking`: the face tracker and lip features on 640x480 frames, pinned to one CPU core, ms per frame.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from avcall.pipelines.errors import InputError
from avcall.pipelines.sources.file import probe
from avcall.pipelines.stages.face_tracker import FaceTracker
from avcall.pipelines.stages.lip_features import lip_features

from .shared_data import shared_data_dir

BENCH_SIZE = (640, 480)
DEFAULT_CLIP = "talking_faces/EDTalk_uncrop_Obama.mp4"  # in ../shared/data: a real face, 450x450, 25 fps


def pin_to_one_core() -> int | None:
    """Restrict this process (and the threads it starts later) to one CPU core; returns the core."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Fit `image` into `size` keeping its aspect ratio, black borders around."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - resized.shape[0]) // 2, (w - resized.shape[1]) // 2
    out[y:y + resized.shape[0], x:x + resized.shape[1]] = resized
    return out


def load_frames(path: Path, count: int) -> list[np.ndarray]:
    import av

    probe(path)
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(letterbox(frame.to_ndarray(format="bgr24"), BENCH_SIZE))
            if len(frames) >= count:
                break
    if not frames:
        raise InputError(f"{path}: no video frames to benchmark on")
    return frames


def bench_tracking(video: Path | None, frames: int = 300, warmup: int = 20) -> dict:
    from avcall.pipelines.frames import VideoFrame

    data = shared_data_dir()
    path = Path(video) if video else (data / DEFAULT_CLIP if data else None)
    if path is None or not path.exists():
        raise InputError(f"no clip to benchmark on: {path or '../shared/data'} is missing; "
                         "give a video of a face with --input VIDEO")
    core = pin_to_one_core()
    images = load_frames(path, frames)
    tracker = FaceTracker(max_faces=2)
    tracker._mesh = tracker._open()  # the benchmark calls the blocking path directly, on this thread
    try:
        times, found = [], 0
        for i in range(warmup + len(images)):
            frame = VideoFrame(pts=i / 25, image=images[i % len(images)], index=i)
            began = time.perf_counter()
            obs = tracker.observe(frame)
            lips = lip_features(obs)
            elapsed = time.perf_counter() - began
            if i >= warmup:
                times.append(elapsed * 1e3)
                found += lips.present
    finally:
        tracker._mesh.close()
    t = np.array(times)
    return {
        "benchmark": "tracking",
        "what": "mediapipe face mesh (478 points, refined) + lip features, per 640x480 frame",
        "input": str(path),
        "frames": len(times),
        "cpu_core": core,
        "cpu": cpu_name(),
        "ms_per_frame": {"mean": float(t.mean()), "p50": float(np.percentile(t, 50)),
                         "p95": float(np.percentile(t, 95)), "max": float(t.max())},
        "fps_one_core": float(1000 / t.mean()),
        "face_found_share": found / len(times),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def write_json(result: dict, out: Path | None) -> str:
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    return text
