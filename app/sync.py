"""`avcall sync INPUT`: the audio-video offset of a talking-face file, found by the sync judge; `--fix -o OUT`
writes a copy with the audio moved into sync. And the judge's own accuracy on real clips: each clip
untouched and with its audio moved by +-2, +-5 and +-10 video frames, the offset found against the truth.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from avcall.models.data.measure import clip_signals
from avcall.pipelines.errors import InputError

SHIFTS = (0, -2, 2, -5, 5, -10, 10)
FRAME_S = 0.04  # one video frame at 25 fps


def shift_audio(audio: np.ndarray, frames: int) -> np.ndarray:
    """The audio made `frames` video frames late (negative: early), same length."""
    n = int(round(frames * FRAME_S * 16_000))
    if n >= 0:
        return np.concatenate([np.zeros(n, np.float32), audio[:len(audio) - n]])
    return np.concatenate([audio[-n:], np.zeros(-n, np.float32)])


def judge_file(path: Path, judge=None, measure=None):
    from avcall.pipelines.nets.sync_judge import SyncJudge

    judge = judge or SyncJudge()
    track, audio = clip_signals(path, measure)
    if not np.any(track.face_present):
        raise InputError(f"{path}: no face found, nothing to judge")
    return judge.judge(track.lips, track.opening, track.width, track.face_present, audio)


def judge_accuracy(clips: list[Path], judge=None, measure=None) -> dict:
    """The judge on each clip shifted by SHIFTS: rows, and the share within one frame of the truth."""
    from avcall.pipelines.nets.sync_judge import SyncJudge

    judge = judge or SyncJudge()
    rows = []
    for path in clips:
        track, audio = clip_signals(path, measure)
        own = None
        for shift in SHIFTS:  # 0 first: the clip's own offset
            r = judge.judge(track.lips, track.opening, track.width, track.face_present, shift_audio(audio, shift))
            own = r.offset_frames if own is None else own
            rows.append({"clip": path.name, "shift": shift, "found": r.offset_frames,
                         "confidence": round(r.confidence, 4), "ok": abs(r.offset_frames - shift) <= 1,
                         "ok_relative": abs(r.offset_frames - own - shift) <= 1})
    return {"offset_within_1_frame": float(np.mean([r["ok"] for r in rows])) if rows else None,
            # against the offset found on the untouched clip (a recording that is itself out of sync)
            "relative_within_1_frame": float(np.mean([r["ok_relative"] for r in rows])) if rows else None,
            "pairs": len(rows), "rows": rows}


def lip_tracks_by_face(frames_bgr: list[np.ndarray], fps: float, max_faces: int = 2) -> list:
    """Every face of a clip as its own lip track at `fps`, faces kept apart by where they sit (each frame's
    faces matched to the tracks' last positions; a new face opens a track)."""
    from avcall.pipelines.face.lip_track import LipTrack
    from avcall.pipelines.frames import FaceObservation
    from avcall.pipelines.stages.face_tracker import FaceTracker
    from avcall.pipelines.face.mesh import lip_features

    tracker = FaceTracker(max_faces=max_faces)
    tracker.open()
    slots: list[dict] = []  # {"x": centre, "rows": {frame: LipFeatures}}
    try:
        for i, image in enumerate(frames_bgr):
            for face in tracker.faces(image):
                x = (face.bbox[0] + face.bbox[2]) / 2
                slot = min(slots, key=lambda s: abs(s["x"] - x), default=None)
                if slot is None or abs(slot["x"] - x) > (face.bbox[2] - face.bbox[0]) or i in slot["rows"]:
                    slot = {"x": x, "rows": {}}
                    slots.append(slot)
                slot["x"] = x
                obs = FaceObservation(pts=i / fps, present=True, confidence=1.0, landmarks=face.landmarks,
                                      bbox=face.bbox, image_size=image.shape[1::-1])
                slot["rows"][i] = lip_features(obs)
    finally:
        tracker.close()
    tracks = []
    n = len(frames_bgr)
    for slot in sorted(slots, key=lambda s: s["x"]):
        rows = [slot["rows"].get(i) for i in range(n)]
        ok = np.array([r is not None and r.present for r in rows])
        shape = np.stack([r.shape if ok[i] else np.zeros((40, 2), np.float32) for i, r in enumerate(rows)])
        opening = np.array([r.opening if ok[i] else 0.0 for i, r in enumerate(rows)], np.float32)
        width = np.array([r.width if ok[i] else 0.0 for i, r in enumerate(rows)], np.float32)
        tracks.append(LipTrack(shape, opening, width, ok, ok.astype(np.float32), fps))
    return tracks


def fix_file(path: Path, out: Path, offset_frames: int) -> None:
    """A copy of `path` with its audio moved `offset_frames` video frames earlier (video copied as is)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial{out.suffix}")
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-i", str(path), "-itsoffset", f"{-offset_frames * FRAME_S:.3f}",
           "-i", str(path), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-shortest", str(tmp)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise InputError("--fix needs ffmpeg (apt-get install ffmpeg)") from None
    except subprocess.CalledProcessError as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {out}: {err.stderr.strip().splitlines()[-1] if err.stderr else err}") from None
    tmp.replace(out)


def cmd_sync(args) -> int:
    if not Path(args.input).is_file():
        raise InputError(f"{args.input}: no such file")
    if args.fix and args.out is None:
        raise InputError("--fix needs -o OUT, the corrected copy to write")
    r = judge_file(Path(args.input))
    late = "late" if r.offset_frames > 0 else "early"
    verdict = "in sync" if abs(r.offset_frames) <= 1 else f"audio {abs(r.offset_ms):.0f} ms {late}"
    print(f"{args.input}: offset {r.offset_ms:+.0f} ms ({r.offset_frames:+d} frames), confidence {r.confidence:.3f}, "
          f"{verdict} ({r.frames} frames judged)")
    if args.fix:
        fix_file(Path(args.input), Path(args.out), r.offset_frames)
        print(f"wrote {args.out} with the audio moved {-r.offset_ms:+.0f} ms")
    return 0


def add_parser(commands) -> None:
    p = commands.add_parser("sync", help="audio-video offset of a talking-face file (and --fix it)",
                            description="Find the audio-video offset of a file with a talking face, with the sync "
                            "judge (tracker lips against the voice, +-15 video frames): positive means the audio "
                            "is late. --fix -o OUT writes a copy with the audio moved into sync.")
    p.add_argument("input", type=Path, help="a video with a face and its voice")
    p.add_argument("--fix", action="store_true", help="write a corrected copy to -o OUT")
    p.add_argument("-o", "--out", type=Path, help="the corrected copy (with --fix)")
