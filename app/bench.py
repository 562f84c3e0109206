"""`avcall bench`: measured speed, written as JSON. Benchmarks, not tests: figures drift on shared machines.

`tracking`: the face tracker and lip features on 640x480 frames, pinned to one CPU core, ms per frame, the whole-frame
path and the crop path side by side, and the crop path's lip error against full-rate tracking on the dev clips.
`enhance`: every noise suppressor that ships, hop by hop through its streaming interface, pinned to one CPU
core, on the same audio in the same run: real-time factor, declared and measured delay, algorithmic latency.
`gate`: the lip gate's decision over a real face clip, pinned to one core: its CPU per second of call.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from avcall.pipelines.errors import InputError
from avcall.pipelines.sources.file import probe
from avcall.pipelines.stages.face_tracker import FaceTracker
from avcall.pipelines.face.mesh import lip_features

from avcall.models.data.shared_data import shared_data_dir

from .eval.cpu import cpu_name, one_core, pin_to_one_core
from .eval.data import git_commit, with_provenance
from .eval.media import letterbox

BENCH_SIZE = (640, 480)
DEFAULT_CLIP = "talking_faces/EDTalk_uncrop_Obama.mp4"  # in ../shared/data: a real face, 450x450, 25 fps
DEFAULT_SPEECH = "speech/DeepSpeech_LibriSpeech_61-70968-0002.wav"  # in ../shared/data: real read speech
ENHANCE_TARGET_RTF = 0.2  # the default suppressor's budget on one core (the whole call shares two)
SERVE_TARGET_DELAY_MS = 40.0  # the served audio path's added delay, beyond the jitter buffer


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


def _ms(times: list[float]) -> dict:
    t = np.array(times) * 1e3
    return {"mean": float(t.mean()), "p50": float(np.percentile(t, 50)), "p95": float(np.percentile(t, 95)),
            "max": float(t.max())}


def _tracking_speed(images: list[np.ndarray], warmup: int) -> dict:
    """ms per frame of each tracking path (`FaceTracker(tracking=...)`, then the lip features), over the same frames in
    the same run, alternating path by path twice (drift on a shared machine falls on both); and where the old path's
    time goes, each part timed alone on the same frames."""
    from avcall.pipelines.frames import VideoFrame
    from avcall.pipelines.stages.face_tracker import TRACKINGS

    trackers = {how: FaceTracker(max_faces=2, tracking=how) for how in TRACKINGS}
    times: dict[str, list[float]] = {how: [] for how in TRACKINGS}
    cpu: dict[str, list[float]] = {how: [] for how in TRACKINGS}
    found = {how: 0 for how in TRACKINGS}
    detections = None
    for tracker in trackers.values():
        tracker.open()  # the benchmark calls the blocking path directly, on this thread
    try:
        for _round in range(2):
            for how, tracker in trackers.items():
                for i in range(warmup + len(images)):
                    frame = VideoFrame(pts=i / 25, image=images[i % len(images)], index=i)
                    began, began_cpu = time.perf_counter(), time.process_time()
                    lips = lip_features(tracker.observe(frame))
                    elapsed, used = time.perf_counter() - began, time.process_time() - began_cpu
                    if i >= warmup:
                        times[how].append(elapsed)
                        cpu[how].append(used)
                        found[how] += lips.present
        crop = trackers["crop"]._mesh.mesh
        detections = crop.detections_run / max(crop.frames, 1)
        parts = _tracking_parts(images, crop)
    finally:
        for tracker in trackers.values():
            tracker.close()
    return {"ms_per_frame": {how: _ms(t) for how, t in times.items()},
            "cpu_ms_per_frame": {how: float(np.mean(t) * 1e3) for how, t in cpu.items()},
            "face_found_share": {how: found[how] / len(times[how]) for how in TRACKINGS},
            "crop_detector_runs_per_frame": detections, "parts_ms": parts}


def _tracking_parts(images: list[np.ndarray], crop) -> dict:
    """Each part of the tracker timed alone (mean CPU ms over the frames): the colour conversion of the whole frame, the
    face detector on it, the mesh handed the whole frame and the region, the mesh handed the crop, the landmarks read
    out of mediapipe's packet as protobuf objects and with numpy."""
    import cv2
    from mediapipe.framework.formats import rect_pb2
    from mediapipe.python import packet_getter

    from avcall.pipelines.face import crop_mesh

    crop.detect(images[0])
    region = crop._tracked[0].region if crop._tracked else crop_mesh.Region(320, 240, 240, 240)
    h, w = images[0].shape[:2]
    whole_roi = rect_pb2.NormalizedRect(x_center=region.cx / w, y_center=region.cy / h, width=region.w / w,
                                        height=region.h / h, rotation=region.rotation)
    last = {}

    def whole(image):
        last["out"] = crop._mesh.run(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), roi=whole_roi)

    def scaled(image):
        crop.mesh_px = crop_mesh.MESH_INPUT
        try:
            crop._mesh_on(image, region)
        finally:
            crop.mesh_px = crop_mesh.MESH_PX

    whole(images[0])
    packet = last["out"]["landmarks"]
    parts = {"colour_conversion_whole_frame": lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2RGB),
             "detector_whole_frame": lambda im: crop._detector.run(cv2.cvtColor(im, cv2.COLOR_BGR2RGB)),
             "mesh_whole_frame": whole,
             "mesh_crop": lambda im: crop._mesh_on(im, region),
             "mesh_crop_scaled_to_192": scaled,
             "landmarks_read_protobuf": lambda _: np.array(
                 [(p.x, p.y, p.z) for p in packet_getter.get_proto(packet).landmark], np.float32),
             "landmarks_read_numpy": lambda _: crop_mesh._normalised_landmarks(packet)}
    spent = {name: 0.0 for name in parts}
    for image in images:  # interleaved, frame by frame: drift on a shared machine falls on every part alike
        for name, fn in parts.items():
            began = time.process_time()  # CPU time, as cpu_ms_per_frame
            fn(image)
            spent[name] += time.process_time() - began
    out = {name: t / len(images) * 1e3 for name, t in spent.items()}
    out["region_side_px"] = float(max(region.w, region.h))
    return out
def _clip_frames(path: Path) -> tuple[list[np.ndarray], float]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)], fps


def _track_clip(images: list[np.ndarray], tracking: str, every: int = 1, mesh_px: int | None = None
                ) -> tuple[list, list[float]]:
    """Landmarks (478, 3) or None per frame, following one face as the call does; with `every` > 1 the tracker
    sees only every `every`-th frame (the others stay None here and are filled by the caller); `mesh_px`: the crop
    path's crops scaled down to regions of that side."""
    from avcall.pipelines.frames import VideoFrame

    tracker = FaceTracker(max_faces=2, tracking=tracking)
    tracker.open()
    if mesh_px:
        tracker._mesh.mesh.mesh_px = mesh_px
    out, times = [], []
    try:
        for i, image in enumerate(images):
            if i % every:
                out.append(None)
                continue
            began = time.process_time()  # CPU time: what the frame cost, whatever else runs on the machine
            obs = tracker.observe(VideoFrame(pts=i / 25, image=image, index=i))
            times.append(time.process_time() - began)
            out.append(obs.landmarks if obs.present else None)
    finally:
        tracker.close()
    return out, times


def _filled(sparse: list, every: int, how: str) -> list:
    """The frames a tracker at 1/`every` of the rate skipped: the last tracked one held, or the two around
    interpolated linearly (what a live path can only do a tracked frame late)."""
    out = list(sparse)
    tracked = [i for i in range(0, len(sparse), every)]
    for k, i in enumerate(tracked):
        j = tracked[k + 1] if k + 1 < len(tracked) else None
        for m in range(i + 1, min(i + every, len(sparse))):
            a, b = sparse[i], sparse[j] if j is not None else None
            if how == "held" or b is None or a is None:
                out[m] = a
            else:
                f = (m - i) / (j - i)
                out[m] = a + f * (b - a)
    return out


def _lip_series(landmarks: list) -> dict:
    from avcall.pipelines.frames import FaceObservation

    opening, width = [], []
    for lm in landmarks:
        lips = lip_features(FaceObservation(pts=0.0, present=lm is not None, confidence=1.0, landmarks=lm))
        opening.append(lips.opening if lips.present else np.nan)
        width.append(lips.width if lips.present else np.nan)
    return {"opening": np.array(opening), "width": np.array(width)}


def _jitter(x: np.ndarray) -> np.ndarray:
    """How far each frame is from the mean of its two neighbours (what frame-to-frame roughness a full-rate
    tracker's output has: noise and the fastest motion of the lips)."""
    return np.abs(x[1:-1] - (x[:-2] + x[2:]) / 2)


def tracking_accuracy(clips: list[Path]) -> dict:
    """Each tracking path against full-rate whole-frame tracking (`tracking="full"`, what ran before) on real
    talking-face clips at their own size: the crop path at the camera's rate, and at half of it with the skipped
    frames held or interpolated. Per clip, then the mean over clips: the lips' landmark error (pixels, mean over the
    40 lip points), the mouth opening's and width's mean absolute difference in units of their standard deviation
    over the clip, the share of frames where one finds a face and the other does not; beside them the reference's own
    jitter in the same units (`_jitter`)."""
    from avcall.pipelines.face.mesh import LIP_INDICES

    variants = {"crop": ("crop", 1, None, None), "crop_scaled_to_192": ("crop", 1, None, 192),
                "crop_half_rate_held": ("crop", 2, "held", None),
                "crop_half_rate_interpolated": ("crop", 2, "interpolated", None)}
    per_clip = {}
    for clip in clips:
        images, fps = _clip_frames(clip)
        reference, ref_times = _track_clip(images, "full")
        ref_lips = _lip_series(reference)
        both_std = {k: float(np.nanstd(v)) for k, v in ref_lips.items()}
        ref_xy = np.array([lm[LIP_INDICES, :2] if lm is not None else np.full((40, 2), np.nan) for lm in reference])
        row = {"frames": len(images), "fps": fps, "size": list(images[0].shape[1::-1]),
               "full_cpu_ms_per_frame": float(np.mean(ref_times) * 1e3),
               "reference_jitter": {"lip_px": float(np.nanmean(np.linalg.norm(
                   ref_xy[1:-1] - (ref_xy[:-2] + ref_xy[2:]) / 2, axis=2))),
                   **{f"{k}_std": float(np.nanmean(_jitter(v)) / both_std[k]) for k, v in ref_lips.items()}}}
        tracked_cache = {}
        for name, (tracking, every, how, mesh_px) in variants.items():
            if (tracking, every, mesh_px) not in tracked_cache:
                tracked_cache[(tracking, every, mesh_px)] = _track_clip(images, tracking, every, mesh_px)
            sparse, times = tracked_cache[(tracking, every, mesh_px)]
            landmarks = _filled(sparse, every, how) if every > 1 else sparse
            lips = _lip_series(landmarks)
            xy = np.array([lm[LIP_INDICES, :2] if lm is not None else np.full((40, 2), np.nan) for lm in landmarks])
            row[name] = {"cpu_ms_per_frame": float(np.sum(times) / len(images) * 1e3),
                         "lip_px": float(np.nanmean(np.linalg.norm(xy - ref_xy, axis=2))),
                         **{f"{k}_std": float(np.nanmean(np.abs(v - ref_lips[k])) / both_std[k])
                            for k, v in lips.items()},
                         "presence_disagrees": float(np.mean([(a is None) != (b is None)
                                                              for a, b in zip(landmarks, reference)]))}
        per_clip[clip.name] = row
    keys = ["lip_px", "opening_std", "width_std"]
    summary = {"reference_jitter": {k: float(np.mean([r["reference_jitter"][k] for r in per_clip.values()]))
                                    for k in keys},
               "full_cpu_ms_per_frame": float(np.mean([r["full_cpu_ms_per_frame"] for r in per_clip.values()]))}
    for name in variants:
        summary[name] = {k: float(np.mean([r[name][k] for r in per_clip.values()]))
                         for k in keys + ["presence_disagrees", "cpu_ms_per_frame"]}
        summary[name]["small"] = all(summary[name][k] < SMALL_SHARE_OF_JITTER * summary["reference_jitter"][k]
                                     for k in keys)
    return {"clips": len(per_clip), "summary": summary, "per_clip": per_clip}


SMALL_SHARE_OF_JITTER = 0.5  # an error under half the full-rate tracker's own jitter adds under an eighth to its noise


def bench_tracking(video: Path | None, frames: int = 300, warmup: int = 20, clips: int | None = None) -> dict:
    """The face tracker and the lip features, pinned to one core: ms per 640x480 frame of the whole-frame path
    (`tracking="full"`, before issue 32) and the crop path (`"crop"`) side by side in one run, where the time goes,
    and the crop path's lip-feature error against full-rate whole-frame tracking on the dev clips
    (`tracking_accuracy`; `clips` limits how many, for a quick look)."""
    from avcall.models.data.shared_data import talking_face_clips
    from avcall.pipelines.stages.face_tracker import TRACKING

    data = shared_data_dir()
    path = Path(video) if video else (data / DEFAULT_CLIP if data else None)
    if path is None or not path.exists():
        raise InputError(f"no clip to benchmark on: {path or '../shared/data'} is missing; "
                         "give a video of a face with --input VIDEO")
    with one_core() as core:
        images = load_frames(path, frames)
        speed = _tracking_speed(images, warmup)
        dev = talking_face_clips(data) if data else []
        dev = dev[:clips] if clips is not None else dev
        accuracy = tracking_accuracy(dev) if dev else None
    ms = speed["ms_per_frame"]
    command = "avcall bench tracking" + (f" --input {video}" if video else "") + (
        f" --frames {frames}" if frames != 300 else "") + (f" --clips {clips}" if clips is not None else "")
    return {
        "benchmark": "tracking",
        "what": "mediapipe face mesh (478 points, refined) + lip features, per 640x480 frame: the whole-frame path "
                "(full) and the crop path (crop) side by side, and the crop path's lip error against full-rate "
                "whole-frame tracking on the dev clips",
        "input": str(path),
        "frames": len(images),
        "cpu_core": core,
        "cpu": cpu_name(),
        "default": TRACKING,
        "ms_per_frame": ms[TRACKING],
        "fps_one_core": float(1000 / ms[TRACKING]["mean"]),
        "face_found_share": speed["face_found_share"][TRACKING],
        "cpu_ms_per_frame": speed["cpu_ms_per_frame"][TRACKING],
        "by_path": {how: {"ms_per_frame": ms[how], "fps_one_core": float(1000 / ms[how]["mean"]),
                          "cpu_ms_per_frame": speed["cpu_ms_per_frame"][how],
                          "face_found_share": speed["face_found_share"][how]} for how in ms},
        "crop_faster": ms["crop"]["mean"] < ms["full"]["mean"] and ms["crop"]["p50"] < ms["full"]["p50"],
        "crop_detector_runs_per_frame": speed["crop_detector_runs_per_frame"],
        "parts_ms": speed["parts_ms"],
        "accuracy": accuracy,
        "small_means": f"every error under {SMALL_SHARE_OF_JITTER} of the full-rate tracker's own frame-to-frame "
                       "jitter (how far a frame is from the mean of its neighbours), in the same units",
        "command": command,
        "commit": git_commit(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def load_speech(path: Path | None, seconds: float) -> tuple[np.ndarray, str]:
    """`seconds` of 16 kHz mono speech (looped if short): --input, else an utterance of ../shared/data,
    else low noise (the timing does not depend on the content)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    data = shared_data_dir()
    if path is None and data is not None and (data / DEFAULT_SPEECH).is_file():
        path = data / DEFAULT_SPEECH
    n = int(seconds * 16_000)
    if path is None:
        return (0.01 * np.random.default_rng(0).standard_normal(n)).astype(np.float32), "noise (no speech file found)"
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as err:
        raise InputError(f"{path}: cannot read audio ({err})") from None
    audio = audio.mean(axis=1)
    if rate != 16_000:
        audio = resample_poly(audio, 16_000, rate).astype(np.float32)
    if len(audio) == 0:
        raise InputError(f"{path}: holds no audio")
    return np.resize(audio, n).astype(np.float32), str(path)


def _ms_stats(times_s: list[float], audio_s: float) -> dict:
    t = np.array(times_s) * 1e3
    return {"rtf": float(t.sum() / 1e3 / audio_s),
            "ms_per_hop": {"mean": float(t.mean()), "p50": float(np.percentile(t, 50)),
                           "p95": float(np.percentile(t, 95)), "max": float(t.max())}}


def bench_gate(video: Path | None = None) -> dict:
    """The lip gate's own cost: its decision, hop by hop as the stage runs it, over a real face clip with its own
    voice and tracked lips, pinned to one CPU core: CPU seconds per second of call (the tracking it reads is the
    call's anyway). Both designs side by side: the net (what ships) and the logistic scorer with the sync judge's
    streamed evidence (the first design)."""
    from avcall.models.data.measure import measure_video
    from avcall.pipelines.lip_gate import GateScorer, default_scorer, gate_clip
    from avcall.pipelines.nets.sync_judge import SyncJudge

    if video is None:
        data = shared_data_dir()
        if data is None:
            raise InputError("no clip: give --input VIDEO (a talking face) or put ../shared/data beside the checkout")
        video = data / DEFAULT_CLIP
    measured = measure_video(video)
    audio = np.asarray(measured.audio, np.float32)
    lips = measured.track.frames(float(measured.audio_offset))
    seconds = len(audio) / 16_000
    designs = {type(default_scorer()).__name__: {}, "GateScorer": {"judge": SyncJudge(), "scorer": GateScorer}}
    figures = {}
    with one_core() as core:
        for name, kwargs in designs.items():
            def run(a, f):
                return gate_clip(a, f, judge=kwargs.get("judge"), scorer=kwargs["scorer"]() if kwargs else None)
            run(audio[:16_000], lips[:25])  # warm up: the sessions' first runs
            began_cpu, began = time.process_time(), time.perf_counter()
            gains = run(audio, lips)
            cpu, wall = time.process_time() - began_cpu, time.perf_counter() - began
            figures[name] = {"cpu_per_call_second": round(cpu / seconds, 4),
                             "wall_per_call_second": round(wall / seconds, 4),
                             "held_share": round(float(np.mean(gains < 0.5)), 3)}
    shipped = next(iter(designs))
    return {"what": "the lip gate's decision, hop by hop (pipelines/lip_gate.py): the shipped scorer "
            f"({shipped}) and the logistic one with the sync judge (GateScorer)",
            "clip": str(video), "seconds": round(seconds, 2), "shipped": shipped, **figures[shipped],
            "designs": figures, "target_cpu_per_call_second": 0.02, "core": core, "cpu": cpu_name(),
            "command": "avcall bench gate" + (f" --input {video}" if video != shared_data_dir() / DEFAULT_CLIP else ""),
            "commit": git_commit()}


def bench_enhance(audio_path: Path | None = None, seconds: float = 10.0, backends: list[str] | None = None,
                  warmup_hops: int = 50, whole_call: Path | None = None) -> dict:
    """Every noise suppressor that ships (or `backends`), hop by hop through its streaming interface as the
    live stage runs it, pinned to one CPU core: real-time factor, ms per hop, its declared delay and the one
    measured by cross-correlation on the same speech, its algorithmic latency."""
    from avcall.pipelines.frames import HOP_SAMPLES as HOP
    from avcall.pipelines.suppressors import DEFAULT, open_suppressor
    from avcall.pipelines.features import enhancers

    from .eval.metrics import measured_delay

    if seconds <= 0:
        raise InputError("--seconds must be positive")
    names = backends or enhancers()
    if not names:
        raise InputError("no noise suppressor ships on this machine (run scripts/setup.sh)")
    audio, source = load_speech(audio_path, seconds)
    audio = audio[: len(audio) // HOP * HOP]
    audio_s = len(audio) / 16_000
    hops = [audio[i:i + HOP] for i in range(0, len(audio), HOP)]
    results: dict = {}
    with one_core() as core:
        for name in names:
            sup = open_suppressor(name)
            for hop in hops[:warmup_hops]:
                sup.push(hop)
            sup.reset()
            times = []
            for hop in hops:
                began = time.perf_counter()
                sup.push(hop)
                times.append(time.perf_counter() - began)
            delay = measured_delay(sup, audio)
            results[name] = _ms_stats(times, audio_s) | {
                "delay_ms": 1000 * sup.delay / 16_000, "delay_ms_measured": 1000 * delay / 16_000,
                "algorithmic_latency_ms": sup.latency_ms}
    default = results.get(DEFAULT)
    call = whole_call_cost(names, whole_call) if whole_call is not None else None
    return {
        "benchmark": "enhance",
        "what": "each noise suppressor through its streaming interface (10 ms hops in, 10 ms out, state carried: "
                "resampling, framing and the model), onnxruntime or the native library on one thread",
        "input": source,
        "audio_seconds": audio_s,
        "cpu_core": core,
        "cpu": cpu_name(),
        "default": DEFAULT,
        "backends": results,
        "rtf_ratio_vs_default": {n: r["rtf"] / default["rtf"] for n, r in results.items()} if default else None,
        "whole_call": call,
        "target": {"rtf_max": ENHANCE_TARGET_RTF, "algorithmic_latency_ms_max": 40.0},
        "meets_target": bool(default and default["rtf"] <= ENHANCE_TARGET_RTF
                             and default["algorithmic_latency_ms"] <= 40.0),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def whole_call_cost(backends: list[str], clip: Path) -> dict:
    """The whole call over a real clip (tracking, lip features, captions, the talking face, the enhancer), once
    without enhancement and once per backend: CPU seconds (all threads and child processes) per second of
    media, and what the enhancer adds to it."""
    import resource
    import tempfile

    from .process import ProcessConfig, run_process

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    if not clip.is_file():
        raise InputError(f"{clip}: no such clip")
    out: dict = {"clip": str(clip), "what": "avcall process CLIP --captions --avatar voice [--enhance NAME]: CPU "
                 "seconds per media second, all threads and child processes"}
    for name in ["off", *backends]:
        with tempfile.TemporaryDirectory() as tmp:
            began = cpu()
            result = run_process(ProcessConfig(input=clip, outdir=Path(tmp) / "out", enhance=name, captions=True,
                                               avatar="voice"), progress=False)
            label = "no enhancement" if name == "off" else name
            out[label] = {"cpu_per_media_s": (cpu() - began) / result.media_seconds}
    base = out["no enhancement"]["cpu_per_media_s"]
    for name in backends:
        out[name]["added_cpu_per_media_s"] = out[name]["cpu_per_media_s"] - base
    return out


def bench_captions(audio_path: Path | None = None, seconds: float = 30.0, backend: str | None = None) -> dict:
    """The live audio path on one core: each 10 ms hop through the enhancer (when its weights are there) and
    then the captioner, as the hops would arrive in a call. Keeping up means the work never piles up: the
    largest backlog (compute so far minus audio so far) stays under a hop or two."""
    from avcall.pipelines.asr import make_engine
    from avcall.pipelines.frames import HOP_SAMPLES as HOP
    from avcall.pipelines.suppressors import DEFAULT, open_suppressor
    from avcall.pipelines.features import enhancers
    from avcall.pipelines.stages.captioner import Captioner

    if seconds <= 0:
        raise InputError("--seconds must be positive")
    audio, source = load_speech(audio_path, seconds)
    audio = audio[: len(audio) // HOP * HOP]
    audio_s = len(audio) / 16_000
    backend = backend or (DEFAULT if DEFAULT in enhancers() else None)
    with one_core() as core:
        enhancer = open_suppressor(backend) if backend else None
        captioner = Captioner(make_engine())
        enhance_t, caption_t, backlog, finals = [], [], 0.0, 0
        lag = 0.0
        for k in range(0, len(audio), HOP):
            hop = audio[k:k + HOP]
            began = time.perf_counter()
            if enhancer is not None:
                hop = enhancer.push(hop)
            mid = time.perf_counter()
            finals += sum(c.kind == "final" for c in captioner.hear(hop, k / 16_000))
            end = time.perf_counter()
            enhance_t.append(mid - began)
            caption_t.append(end - mid)
            lag = max(0.0, lag + (end - began) - HOP / 16_000)  # work still queued when the next hop arrives
            backlog = max(backlog, lag)
    both = [a + b for a, b in zip(enhance_t, caption_t)]
    return {
        "benchmark": "captions",
        "what": "per 10 ms hop: the default noise suppressor then the Captioner with the default engine (voice "
                "activity, partials and finals), on one CPU core",
        "input": source,
        "audio_seconds": audio_s,
        "enhancer": {"backend": backend} | _ms_stats(enhance_t, audio_s) if enhancer else None,
        "captioner": _ms_stats(caption_t, audio_s) | {"finals": finals},
        "together": _ms_stats(both, audio_s),
        "max_backlog_s": backlog,
        "keeps_up": bool(sum(both) < audio_s and backlog < 0.5),
        "cpu_core": core,
        "cpu": cpu_name(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def bench_avatar(audio_path: Path | None = None, seconds: float = 10.0, size: int = 256,
                 video: Path | None = None) -> dict:
    """The talking face on one core: each 10 ms hop through the voice-to-lips net, a 256x256 portrait frame
    rendered every fourth hop (25 fps). End to end, the mouth shows a sound after the net's look-ahead, the
    hop it arrives in and the frame's rendering."""
    from avcall.pipelines.face.render import PortraitRenderer
    from avcall.pipelines.nets.voice_to_lips import LOOKAHEAD
    from avcall.pipelines.nets.voice_to_lips import VoiceToLipsStream

    audio, source = load_speech(audio_path, seconds)
    with one_core() as core:
        net, renderer = VoiceToLipsStream(), PortraitRenderer(size=size)
        hop_t, render_t = [], []
        for k in range(0, len(audio) - 159, 160):
            began = time.perf_counter()
            row = net.step(audio[k:k + 160])
            hop_t.append(time.perf_counter() - began)
            if (k // 160) % 4 == 3:
                began = time.perf_counter()
                renderer.render((row[:80].reshape(40, 2) + net.mean).astype(np.float64), k / 16_000)
                render_t.append(time.perf_counter() - began)
    per_frame = 4 * float(np.mean(hop_t)) + float(np.mean(render_t))
    render_p95 = float(np.percentile(render_t, 95))
    latency_ms = LOOKAHEAD * 10 + 10 + 1000 * (4 * float(np.mean(hop_t)) + render_p95)
    return {
        "benchmark": "avatar",
        "what": f"voice-to-lips net (onnxruntime, 1 thread) per 10 ms hop + one {size}x{size} portrait frame per "
                "4 hops, on one CPU core",
        "input": source,
        "fps_one_core": 1.0 / per_frame,
        "net_ms_per_hop": {"mean": 1000 * float(np.mean(hop_t)), "p95": 1000 * float(np.percentile(hop_t, 95))},
        "render_ms_per_frame": {"mean": 1000 * float(np.mean(render_t)), "p95": render_p95 * 1000},
        "mouth_latency_ms": latency_ms,
        "mouth_latency_parts": {"lookahead_ms": LOOKAHEAD * 10, "hop_ms": 10, "compute_p95_ms": latency_ms - LOOKAHEAD * 10 - 10},
        "targets": {"fps_min": 25, "mouth_latency_ms_max": 100},
        "meets_target": bool(1.0 / per_frame >= 25 and latency_ms <= 100),
        "reenact": bench_reenact(video, seconds, size),
        "cpu_core": core,
        "cpu": cpu_name(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def bench_reenact(video: Path | None, seconds: float, size: int) -> dict:
    """`--avatar reenact` on one core: a face video tracked frame by frame, each face through the landmark
    codec and the portrait rendered from it; the codec's bitrate beside what aiortc's VP8 encoder (the one a
    served call sends with) makes of the same frames at the same frame rate, in the same run."""
    import av
    from aiortc.codecs.vpx import DEFAULT_BITRATE, MAX_BITRATE, MIN_BITRATE, Vp8Encoder

    from avcall.pipelines.face.render import PortraitRenderer
    from avcall.pipelines.face.codec import LandmarkDecoder, LandmarkEncoder
    from avcall.pipelines.frames import VideoFrame

    data = shared_data_dir()
    path = Path(video) if video else (data / DEFAULT_CLIP if data else None)
    if path is None or not path.exists():
        raise InputError(f"no face video for the reenact benchmark: {path or '../shared/data'} is missing; "
                         "give one with --video VIDEO")
    probe(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        images = []
        for frame in container.decode(stream):
            images.append(frame.to_ndarray(format="bgr24"))
            if len(images) >= seconds * fps:
                break
    with one_core():
        tracker = FaceTracker(max_faces=1)
        tracker.open()
        encoder, decoder, renderer = LandmarkEncoder(), LandmarkDecoder(), PortraitRenderer(size=size)
        vp8 = Vp8Encoder()
        track_t, codec_t, render_t, codec_bytes, vp8_bytes, faces = [], [], [], 0, 0, 0
        try:
            for i, image in enumerate(images):
                pts = i / fps
                began = time.perf_counter()
                obs = tracker.observe(VideoFrame(pts=pts, image=image, index=i))
                track_t.append(time.perf_counter() - began)
                began = time.perf_counter()
                packet = encoder.encode_observation(obs)
                face = decoder.decode(packet)
                codec_t.append(time.perf_counter() - began)
                codec_bytes += len(packet)
                faces += face.present
                began = time.perf_counter()
                renderer.render(renderer.neutral_shape + face.motion, pts,
                                face.eye_closure, face.roll)
                render_t.append(time.perf_counter() - began)
                camera = av.VideoFrame.from_ndarray(image, format="bgr24")
                camera.pts, camera.time_base = i * 3000, Fraction(1, 90000)
                payloads, _ = vp8.encode(camera)
                vp8_bytes += sum(len(p) for p in payloads)
        finally:
            tracker.close()
    n = len(images)
    per_frame = float(np.mean(codec_t) + np.mean(render_t))
    codec_kbps = codec_bytes * 8 * fps / n / 1000
    vp8_kbps = vp8_bytes * 8 * fps / n / 1000
    return {
        "what": f"a face video tracked, each face through the landmark codec, a {size}x{size} portrait rendered "
                "from it; the camera frames through aiortc's VP8 encoder at the same frame rate",
        "input": str(path), "frames": n, "fps": fps, "face_frames": faces,
        "video_size": [images[0].shape[1], images[0].shape[0]],
        "codec_kbps": codec_kbps, "codec_bytes_per_frame": codec_bytes / n,
        "vp8_kbps": vp8_kbps, "codec_share_of_vp8": codec_kbps / vp8_kbps,
        "vp8_encoder": f"aiortc Vp8Encoder, constant bitrate at its default target {DEFAULT_BITRATE // 1000} kbit/s "
                       f"(congestion control moves it between {MIN_BITRATE // 1000} and {MAX_BITRATE // 1000})",
        "tracker_ms_per_frame": 1000 * float(np.mean(track_t)),
        "codec_ms_per_frame": 1000 * float(np.mean(codec_t)),
        "render_ms_per_frame": {"mean": 1000 * float(np.mean(render_t)), "p95": 1000 * float(np.percentile(render_t, 95))},
        "fps_one_core": 1.0 / (per_frame + float(np.mean(track_t))),
        "targets": {"codec_kbps_max": 8},
        "meets_target": bool(codec_kbps < 8),
    }


def bench_emotion(audio_path: Path | None = None, seconds: float = 20.0) -> dict:
    """The whole emotion stage on one core: a 640x480 call at 25 fps with the tracked portrait (the tracker's
    own cost is not the stage's) and a voice, through EmotionReader; per 250 ms hop, the stage's time on the
    event loop (frames in) plus its worker's (face cut out, both nets, fusion, smoothing)."""
    import asyncio

    import cv2
    from skimage import data

    from avcall.pipelines.frames import AudioFrame, FaceObservation, VideoFrame
    from avcall.pipelines.stages.emotion import EmotionReader
    from avcall.pipelines.stages.face_tracker import FaceTracker

    audio, source = load_speech(audio_path, seconds)
    image = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (480, 480))
    image = cv2.copyMakeBorder(image, 0, 0, 80, 80, cv2.BORDER_CONSTANT)  # 640x480
    tracker = FaceTracker()
    tracker.open()
    try:
        landmarks = tracker.observe(VideoFrame(pts=0.0, image=image)).landmarks
    finally:
        tracker.close()
    frames = [VideoFrame(pts=k / 25, image=image, index=k) for k in range(int(seconds * 25))]
    frames += [FaceObservation(pts=k / 25, present=True, confidence=1.0, landmarks=landmarks)
               for k in range(int(seconds * 25))]
    frames += [AudioFrame(pts=s / 16_000, samples=audio[s:s + 320]) for s in range(0, len(audio) - 319, 320)]
    frames.sort(key=lambda f: (f.pts, isinstance(f, FaceObservation), isinstance(f, AudioFrame)))

    async def run(stage: EmotionReader) -> float:
        await stage.start()
        began = time.perf_counter()
        for f in frames:
            await stage.process(f)
        await stage.flush()
        took = time.perf_counter() - began
        await stage.stop()
        stage.shutdown_worker()
        return took

    with one_core() as core:  # the event loop and the stage's worker share the one core: wall time is its cost
        stage = EmotionReader(live=False)  # every hop read, in turn with the frames
        total_s = asyncio.run(run(stage))
    t = stage.telemetry
    worker = np.array(t.infer_ms)
    hops = max(t.readings, 1)
    per_hop = 1000 * total_s / hops
    return {
        "benchmark": "emotion",
        "what": "EmotionReader on one CPU core: 640x480 video at 25 fps with a tracked face and a voice; per 250 ms "
                "hop the face cut out, the face net (64x64), the voice net (2 s log-mel window), fusion "
                f"({stage.method}), smoothing; plus taking in the hop's frames (wall time on the one core)",
        "input": source,
        "hops": t.readings,
        "sources": {"both": t.readings - t.face_only - t.voice_only - t.held, "face_only": t.face_only,
                    "voice_only": t.voice_only, "held": t.held},
        "ms_per_hop": round(float(per_hop), 3),
        "worker_ms_per_hop": {"mean": round(float(worker.mean()), 3), "p95": round(float(np.percentile(worker, 95)), 3)},
        "frames_ms_per_hop": round(float(per_hop - worker.mean()), 3),
        "share_of_one_core": round(float(per_hop) / 250, 4),
        "target_ms_per_hop": 5.0,
        "meets_target": bool(per_hop <= 5.0),
        "cpu_core": core,
        "cpu": cpu_name(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def bench_serve(seconds: float = 20.0, clip: Path | None = None, peers: tuple[int, ...] = (1,),
                sessions: tuple[str, ...] = ("shared",)) -> dict:
    """The served path on loopback, N peers at once for each N of `peers`: `avcall serve`'s server and N aiortc
    peers, each playing a talking-face clip with real WebRTC both ways. Per N: the server's own measure of the
    added audio delay (a hop's arrival from its peer to its departure to the encoder, after the jitter buffer),
    the share of hops passed through unenhanced, the audio and video each peer got back against what real time
    would give, the process's CPU per peer and its memory (with the recognisers' processes). `sessions`:
    "shared" (one onnxruntime session per model for every peer, the product's way) and/or "per-stream" (a
    session per peer, as before), each run for every N."""
    import tempfile

    from avcall.models.data.portrait import DEMO_LINE, write_talking_portrait

    from .fixtures import write_synthetic_clip
    from .serve import Server, ServeConfig

    async def one_peer(port: int, path: Path, got: dict) -> list[dict]:
        from aiohttp import ClientSession
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.contrib.media import MediaPlayer

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        player = MediaPlayer(str(path), loop=True)
        for track in (player.audio, player.video):
            if track is not None:
                pc.addTrack(track)
        channel = pc.createDataChannel("avcall")
        telemetry: list[dict] = []
        channel.on("message", lambda m: telemetry.append(json.loads(m)) if '"telemetry"' in m else None)
        pc.on("track", lambda t: asyncio.ensure_future(_drain(t, got)))
        try:
            await pc.setLocalDescription(await pc.createOffer())
            async with ClientSession() as session:
                reply = await session.post(f"http://127.0.0.1:{port}/offer",
                                           json={"sdp": pc.localDescription.sdp, "type": "offer"})
                answer = await reply.json()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
            await asyncio.sleep(seconds)
        finally:
            await pc.close()
        return telemetry

    async def run(path: Path, n: int) -> tuple[list[list[dict]], list[dict], float]:
        from aiohttp import web

        from .eval.usage import cpu_by_part, rss_mb

        server = Server(ServeConfig(max_peers=n))
        server.load_models()
        runner = web.AppRunner(server.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        got = [{"audio_s": 0.0, "video_frames": 0} for _ in range(n)]
        memory = [rss_mb()]  # before the peers, then with every peer's call running
        parts = [(time.monotonic(), cpu_by_part())]

        async def sample_memory() -> None:
            await asyncio.sleep(seconds * 0.75)
            memory.append(rss_mb())
            await asyncio.sleep(seconds * 0.2)  # the parts while every call still runs (threads end with them)
            parts.append((time.monotonic(), cpu_by_part()))

        try:
            telemetry, _ = await asyncio.gather(asyncio.gather(*(one_peer(port, path, got[i]) for i in range(n))),
                                                sample_memory())
        finally:
            await runner.cleanup()
        (t0, before), (t1, after) = parts[0], parts[-1]
        by_part = {part: round((after[part] - before.get(part, 0.0)) / max(t1 - t0, 1e-3) / n, 3) for part in after}
        return telemetry, got, (memory[1] - memory[0]) / n if len(memory) == 2 else None, by_part

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = clip
        if path is None:  # as long as the run: aiortc's player does not loop a clip's audio
            path = Path(tmp) / "talk.mp4"
            if not write_talking_portrait(path, [DEMO_LINE] * (int(seconds // 4) + 2)):
                asyncio.run(write_synthetic_clip(path, seconds + 2))
        from avcall.pipelines.runtime import sessions_shared

        for mode, n in [(mode, n) for mode in sessions for n in peers]:
            with sessions_shared(mode == "shared"):
                telemetry, got, memory, by_part = asyncio.run(run(path, n))
            late = [t for per in telemetry for t in per[len(per) // 4:] if t.get("audio_delay_ms") is not None]
            if not late:
                raise InputError(f"bench serve: no telemetry came back from the server with {n} peer(s)")
            passed = [t["incidents"].get("audio_passthrough_samples", 0) for per in telemetry for t in per[-1:]]
            results.setdefault(mode, {})[str(n)] = {
                "added_audio_delay_ms": {"p50": float(np.median([t["audio_delay_ms"] for t in late])),
                                         "p95": float(np.median([t["audio_delay_p95_ms"] for t in late]))},
                # the server's jitter buffer: how long a packet of the voice waited there (before the added delay)
                "receive_buffer_ms": _median_of([t.get("receive_buffer_ms") for t in late]),
                "audio_back_share": [round(g["audio_s"] / seconds, 3) for g in got],  # 1.0: all of real time
                "video_back_fps": [round(g["video_frames"] / seconds, 1) for g in got],
                "audio_passed_through_s": [round(p / 16_000, 2) for p in passed],
                # of one core: the process's threads and its recogniser's process (alive, so not in getrusage's
                # children: they count once waited for) over the window the parts are read in
                "cpu_per_peer": round(sum(by_part.values()), 3),
                # where it goes (app/eval/usage.cpu_by_part); the peers' aiortc ends run in this process too, so
                # decode, the encoders and the event loop hold theirs as well as the server's
                "cores_by_part_per_peer": dict(sorted(by_part.items(), key=lambda kv: -kv[1])),
                "memory_per_peer_mb": round(memory, 1) if memory is not None else None,  # added, with the recognisers
                "enhance": late[-1]["enhance"],
                "face_seen_share": float(np.mean([t["face"] for t in late])),
                "stages_ms": late[-1]["stages"],
            }
    one = results[sessions[0]][str(peers[0])]
    return {
        "benchmark": "serve",
        "what": "avcall serve on 127.0.0.1 with N aiortc peers at once, each playing a talking-face clip; added "
                "audio delay = a 10 ms hop's arrival at the server (after the jitter buffer) to its departure to "
                "the Opus encoder, enhanced (medians over the run's telemetry after the first quarter); audio and "
                "video got back by each peer; server CPU (its threads and the recognisers' processes) per peer",
        "seconds": seconds,
        "peers": results.get("shared", results[sessions[0]]),
        **({"per_stream_sessions": results["per-stream"]} if "per-stream" in results and "shared" in results else {}),
        "added_audio_delay_ms": one["added_audio_delay_ms"],
        "target_ms": SERVE_TARGET_DELAY_MS,
        "meets_target": bool(one["added_audio_delay_ms"]["p50"] <= SERVE_TARGET_DELAY_MS),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _median_of(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.median(values)), 1) if values else None


async def _drain(track, got: dict | None = None) -> None:
    """Receive a track to its end, counting what came: seconds of audio, video frames."""
    while True:
        try:
            frame = await track.recv()
        except Exception:  # noqa: BLE001 - the track ended
            return
        if got is not None and track.kind == "audio":
            got["audio_s"] += frame.samples / frame.sample_rate
        elif got is not None:
            got["video_frames"] += 1


def write_json(result: dict, out: Path | None) -> str:
    """The benchmark's JSON, naming the command and the commit that made it; written to `out` when given."""
    from .eval.data import write_report

    result = with_provenance(result)
    if out is not None:
        write_report(out, result)
    return json.dumps(result, indent=2)
