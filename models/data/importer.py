"""`avcall corpus import VIDEO_DIR`: a folder of real talking-face videos (a user's copy of LRS3, GRID,
their own recordings) into the corpus's example format, by running the tracker and the aligner, so that
the same training scripts take real data."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from ...pipelines.errors import InputError
from ...pipelines.frames import SAMPLE_RATE
from avcall.pipelines.face.lip_track import LIP_FPS, LipTrack
from .example import Example, write_example
from .make import check_new_folder
from .measure import measure_video

VIDEO_SUFFIXES = {".mp4", ".mpg", ".mpeg", ".mkv", ".webm", ".avi", ".mov"}


def read_transcript(video: Path) -> str | None:
    """The `.txt` beside a video: LRS-style (`Text:  ...`) or the plain sentence."""
    txt = video.with_suffix(".txt")
    if not txt.is_file():
        return None
    content = txt.read_text(errors="replace")
    m = re.search(r"^Text:\s*(.+)$", content, re.M)
    text = m.group(1) if m else content.strip().splitlines()[0] if content.strip() else ""
    return text.strip() or None


def to_lip_fps(track: LipTrack, n_frames: int) -> LipTrack:
    """The nearest measured frame for each corpus frame at LIP_FPS."""
    return track.at_fps(LIP_FPS, n_frames)


def import_videos(folder: Path, out: Path, progress: Callable[[int, int, str], None] | None = None) -> dict:
    from .align import timing_for

    videos = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise InputError(f"{folder}: no videos ({', '.join(sorted(VIDEO_SUFFIXES))})")
    check_new_folder(out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    skipped = {}
    seconds = 0.0
    for i, video in enumerate(videos):
        if progress:
            progress(i, len(videos), video.name)
        try:
            measured = measure_video(video, cache=False)
        except InputError as err:
            skipped[str(video.relative_to(folder))] = str(err)
            continue
        if len(measured.audio) == 0 or len(measured.track) == 0:
            skipped[str(video.relative_to(folder))] = "needs both audio and video"
            continue
        audio = measured.audio
        text = read_transcript(video)
        timing = timing_for(audio, text)
        n_frames = int(np.ceil(len(audio) / SAMPLE_RATE * LIP_FPS))
        # audio sample 0 is at video time audio_offset: move the track onto the audio's clock
        lips = to_lip_fps(_shift(measured.track, measured.audio_offset), n_frames)
        name = f"{len(list((staging / 'examples').glob('*.json'))) if staging.exists() else 0:06d}"
        zeros = np.zeros_like(audio)
        peak = float(np.abs(audio).max(initial=0))
        audio = audio * min(1.0, 0.99 / peak) if peak > 0 else audio
        meta = {"name": name, "seconds": round(len(audio) / SAMPLE_RATE, 4), "text": (text or "").lower(),
                "timing": timing.to_json(), "video": False, "room": None, "interferer": None, "noise": None,
                "target": {"source": "imported", "voice": f"imported:{video.parent.name}",
                           "file": str(video.relative_to(folder)), "text": (text or "").lower(),
                           "timing_method": timing.method},
                "lips": {"face_missing_share": round(float(1 - lips.face_present.mean()), 4), "measured": True}}
        write_example(staging / "examples", Example(name, {"mixture": audio, "target": audio, "interferer": zeros,
                                                           "noise": zeros, "target_dry": audio}, lips, meta))
        seconds += len(audio) / SAMPLE_RATE
    written = len(list((staging / "examples").glob("*.json"))) if staging.exists() else 0
    if written == 0:
        raise InputError(f"{folder}: none of the {len(videos)} videos could be imported: {skipped}")
    summary = {"version": 1, "imported_from": str(folder), "examples": written, "seconds": round(seconds, 3),
               "skipped": skipped}
    (staging / "corpus.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    if out.exists():
        out.rmdir()
    staging.rename(out)
    return summary


def _shift(track: LipTrack, audio_offset: float) -> LipTrack:
    """Drop (or pad with missing frames) so that frame 0 is at audio time 0."""
    frames = int(round(audio_offset * track.fps))
    if frames > 0:
        return LipTrack(track.lips[frames:], track.opening[frames:], track.width[frames:],
                        track.face_present[frames:], track.confidence[frames:], track.fps)
    if frames < 0:
        pad = -frames
        return LipTrack(np.concatenate([np.zeros((pad,) + track.lips.shape[1:], track.lips.dtype), track.lips]),
                        np.r_[np.zeros(pad, np.float32), track.opening], np.r_[np.zeros(pad, np.float32), track.width],
                        np.r_[np.zeros(pad, bool), track.face_present], np.r_[np.zeros(pad, np.float32),
                                                                             track.confidence], track.fps)
    return track
