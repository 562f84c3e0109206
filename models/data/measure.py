"""The tracker's measurement of a real video: its lip track on the video's frame times and its audio,
on the one clock. Used to fit the lip model, to check the corpus against reality, and by `corpus import`."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...pipelines.frames import LIP_POINTS, AudioFrame, VideoFrame
from ...pipelines.sources.base import SourceEnded
from ...pipelines.sources.file import FileSource
from ...pipelines.stages.face_tracker import FaceTracker
from avcall.pipelines.face.mesh import lip_features
from avcall.pipelines.face.lip_track import LipTrack
from .example import cache_root, load_lip_track, save_lip_track


@dataclass
class MeasuredVideo:
    track: LipTrack  # one row per video frame, at the video's frame rate
    audio: np.ndarray  # 16 kHz mono float32 from the first audio sample
    audio_offset: float  # video time of audio sample 0: the track's frame i is at i / fps - audio_offset in audio time


async def _measure(path: Path) -> MeasuredVideo:
    source = FileSource(path)
    tracker = FaceTracker(max_faces=2)
    await source.start()
    await tracker.start()
    rows, audio, first_video, first_audio = [], [], None, None
    try:
        while True:
            try:
                frame = await source.recv()
            except SourceEnded:
                break
            if isinstance(frame, VideoFrame):
                first_video = frame.pts if first_video is None else first_video
                rows.append(lip_features(tracker.observe(frame)))
            elif isinstance(frame, AudioFrame):
                first_audio = frame.pts if first_audio is None else first_audio
                audio.append(frame.samples)
    finally:
        await tracker.stop()
        await source.stop()
    fps = float(source.info.fps or 25.0)
    empty = np.zeros((LIP_POINTS, 2), np.float32)
    track = LipTrack(
        lips=np.stack([r.shape if r.present else empty for r in rows]) if rows else np.zeros((0, LIP_POINTS, 2)),
        opening=np.array([r.opening for r in rows], np.float32),
        width=np.array([r.width for r in rows], np.float32),
        face_present=np.array([r.present for r in rows], bool),
        confidence=np.array([r.confidence for r in rows], np.float32), fps=fps)
    samples = np.concatenate(audio) if audio else np.zeros(0, np.float32)
    offset = (first_audio - first_video) if (first_audio is not None and first_video is not None) else 0.0
    return MeasuredVideo(track, samples, offset)


def cache_dir() -> Path:
    return cache_root() / "measured"


def measure_video(path: str | Path, cache: bool = True) -> MeasuredVideo:
    """Track a video (or read the cached result, keyed by the file's bytes)."""
    path = Path(path)
    key = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
    folder = cache_dir()
    lips_file, audio_file = folder / f"{key}.lips.npz", folder / f"{key}.audio.npz"
    if cache and lips_file.exists() and audio_file.exists():
        with np.load(audio_file) as z:
            return MeasuredVideo(load_lip_track(lips_file), z["audio"], float(z["offset"]))
    measured = asyncio.run(_measure(path))
    if cache:
        folder.mkdir(parents=True, exist_ok=True)
        save_lip_track(lips_file, measured.track)
        np.savez(audio_file, audio=measured.audio, offset=measured.audio_offset)
    return measured


def clip_signals(path: Path, measure=None):
    """(lip track at 25 fps, audio at 16 kHz on the video's clock) of a talking-face file."""
    m = (measure or measure_video)(Path(path))
    track = m.track
    if abs(track.fps - 25.0) > 0.01:  # the judge works at 25 fps: nearest frame
        track = track.at_fps(25.0, int(len(track) * 25.0 / track.fps))
    audio = np.asarray(m.audio, np.float32)
    lead = int(round(float(m.audio_offset) * 16_000))  # audio sample 0 sits at audio_offset on the video clock
    audio = np.concatenate([np.zeros(lead, np.float32), audio]) if lead > 0 else audio[-lead:]
    return track, audio
