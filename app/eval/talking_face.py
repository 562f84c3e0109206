"""`avcall eval talking-face`: the avatar's mouth against the real speaker's, and the sync judge on both.

For each talking-face clip: the tracker's lips on the real video are the reference. Methods:
- `avcall-voice`: the voice-to-lips net driven by the clip's own audio;
- `avcall-reenact`: the real speaker's tracked lips through the landmark codec (what `--avatar reenact`
  sends and the portrait is driven by): what the codec keeps of the face's motion;
- `phoneme-oracle`: the corpus's lip model on a forced alignment of the transcript (GRID, LRS2 only);
- `static`: a still mouth (the lip model's mean), the floor.
Metrics per method: `mouth_open_r` (Pearson r of the mouth opening with the real speaker's; for the methods
moved by the voice also `mouth_open_r_synced`, the same with the real lips taken at the offset the judge
finds between the clip's own video and voice where that is out of sync (over one frame): a few recordings
are several frames off, and a mouth moved by the voice goes with the voice, not with a picture that lags
it), `lip_feature_r` (mean r over the lip-shape coordinates, opening and width), `sync_offset_frames`
(|offset| the judge finds between the method's lips and the audio), `sync_confidence`, `in_sync_share`
(clips with |offset| <= 1 and confidence >= 80% of the real video's own) and `fps` (lip frames made per
second of compute), of the lip features that drive the renderer; for the two avatars also under
`rendered`: the same of the rendered portrait (blinks and head motion included) run back through the
tracker, what a viewer sees. The first SIDE_BY_SIDE clips are written beside the report as real | avatar by
the voice | avatar by the face, with the clip's voice (`<report>_side_by_side/`). Also `judge`: the judge's
own accuracy on the untouched real clips shifted by +-2, +-5, +-10 frames (`avcall eval sync`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avcall.models.data.shared_data import shared_data_dir, talking_face_clips

from .data import check_data_dir, write_report

METHODS = ("avcall-voice", "avcall-voice-candidate", "avcall-reenact", "phoneme-oracle", "static")
# the methods whose mouth follows the voice, not the picture
BY_VOICE = ("avcall-voice", "avcall-voice-candidate", "phoneme-oracle")
CANDIDATE_ENV = "AVCALL_TALKING_FACE_CANDIDATE"  # a voice-to-lips .onnx scored beside the shipped one
SIDE_BY_SIDE = 3  # clips written as real | avatar by the voice | avatar by the face, beside the report


def _r(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r of the real `a` and the method's `b`; 0 for a method that does not move (it follows
    nothing), None where the real speaker does not move either."""
    if len(a) < 5 or np.std(a) < 1e-9:
        return None
    if np.std(b) < 1e-9:
        return 0.0
    r = float(np.corrcoef(a, b)[0, 1])
    return r if np.isfinite(r) else None


def compare(real, fake, offset: int = 0) -> dict:
    """Pearson r of the opening and of the lip features; with `offset`, the method's frame i against the
    real frame i - offset (the real clip's picture `offset` frames behind its voice)."""
    if offset:
        real, fake = _lagged(real, fake, offset)
    n = min(len(real.lips), len(fake.lips))
    ok = np.asarray(real.face_present[:n], bool)
    if ok.sum() < 5:
        return {"mouth_open_r": None, "lip_feature_r": None}
    rf = np.concatenate([real.lips[:n].reshape(n, -1), real.opening[:n, None], real.width[:n, None]], 1)[ok]
    ff = np.concatenate([fake.lips[:n].reshape(n, -1), fake.opening[:n, None], fake.width[:n, None]], 1)[ok]
    rs = [r for r in (_r(rf[:, j], ff[:, j]) for j in range(rf.shape[1])) if r is not None]
    return {"mouth_open_r": _r(real.opening[:n][ok], fake.opening[:n][ok]),
            "lip_feature_r": float(np.mean(rs)) if rs else None}


def _lagged(real, fake, offset: int):
    from dataclasses import replace

    n = min(len(real.lips), len(fake.lips))
    r0, f0 = max(0, -offset), max(0, offset)
    m = max(n - abs(offset), 0)

    def cut(track, start):
        return replace(track, lips=track.lips[start:start + m], opening=track.opening[start:start + m],
                       width=track.width[start:start + m], face_present=track.face_present[start:start + m],
                       confidence=track.confidence[start:start + m])
    return cut(real, r0), cut(fake, f0)


def static_track(n: int):
    from avcall.pipelines.face.lip_track import LipTrack
    from avcall.pipelines.face.lip_model import LipModel

    mean = LipModel.load().mean.astype(np.float32)
    return LipTrack(np.repeat(mean[None], n, 0), np.zeros(n, np.float32), np.ones(n, np.float32), np.ones(n, bool),
                    np.ones(n, np.float32), 25.0)


def reenact_track(real):
    """The tracked lips after the landmark codec's round trip, its bytes a frame, and the decoded motion (what
    moves the portrait)."""
    from avcall.pipelines.face.lip_track import LipTrack
    from avcall.pipelines.face.lip_model import shape_measures
    from avcall.pipelines.face.codec import LandmarkDecoder, LandmarkEncoder

    encoder, decoder = LandmarkEncoder(), LandmarkDecoder()
    lips, motion, sent = [], [], 0
    for i, (shape, present) in enumerate(zip(real.lips, real.face_present)):
        packet = encoder.encode(i / real.fps, shape if present else None)
        sent += len(packet)
        face = decoder.decode(packet)
        lips.append(face.shape)
        motion.append(face.motion)
    lips = np.array(lips, np.float32)
    opening, width = shape_measures(lips)
    n = len(lips)
    track = LipTrack(lips, opening.astype(np.float32), width.astype(np.float32), np.asarray(real.face_present, bool),
                     np.ones(n, np.float32), real.fps)
    return track, sent / max(n, 1), np.array(motion, np.float32)


class AvatarRoundTrip:
    """The avatar's frames for the lips that drive it, and those frames run back through the tracker: what a
    viewer of the rendered portrait sees its mouth do."""

    def __init__(self) -> None:
        from avcall.pipelines.face.render import PortraitRenderer
        from avcall.pipelines.stages.face_tracker import FaceTracker

        self.renderer = PortraitRenderer()
        self.tracker = FaceTracker(max_faces=1)
        self.tracker.open()  # called directly, on this thread

    def frames(self, shapes: np.ndarray) -> list[np.ndarray]:
        return [self.renderer.render(shape, i / 25.0) for i, shape in enumerate(shapes)]

    def retrack(self, images: list[np.ndarray]):
        from avcall.pipelines.face.lip_track import LipTrack
        from avcall.pipelines.frames import VideoFrame
        from avcall.pipelines.face.mesh import lip_features

        feats = [lip_features(self.tracker.observe(VideoFrame(pts=i / 25.0, image=im, index=i)))
                 for i, im in enumerate(images)]
        return LipTrack(np.stack([f.shape for f in feats]), np.array([f.opening for f in feats], np.float32),
                        np.array([f.width for f in feats], np.float32), np.array([f.present for f in feats]),
                        np.array([f.confidence for f in feats], np.float32), 25.0)

    def close(self) -> None:
        self.tracker.close()


def side_by_side(path: Path, clip: Path, avatars: dict[str, list[np.ndarray]], audio: np.ndarray) -> None:
    """The real clip beside each avatar, 256 px each, labelled, with the clip's voice."""
    import av
    import cv2

    from avcall.pipelines.face.render import write_mp4

    from .media import letterbox

    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        real = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
    n = min(len(a) for a in avatars.values())
    idx = np.minimum(np.round(np.arange(n) * rate / 25.0).astype(int), len(real) - 1)
    panels = {"real": [letterbox(real[i], (256, 256)) for i in idx], **avatars}
    images = []
    for i in range(n):
        row = []
        for name, frames in panels.items():
            tile = np.ascontiguousarray(frames[i])
            cv2.putText(tile, name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            row.append(tile)
        images.append(np.hstack(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, images, (256 * len(panels), 256), 25.0, audio[:round(n / 25.0 * 16_000)])


def judged(judge, real, track, audio: np.ndarray, own, by_voice: bool) -> dict:
    """A method's lips against the real speaker's (as recorded; for a method moved by the voice also at the
    clip's own offset `own` where the clip is out of sync), and the sync judge's verdict on them with the voice."""
    m = min(len(real.lips), len(track.lips))
    r = judge.judge(track.lips[:m], track.opening[:m], track.width[:m], track.face_present[:m], audio)
    as_recorded = compare(real, track)
    lag = own.offset_frames if abs(own.offset_frames) > 1 else 0
    synced = (compare(real, track, lag) if lag else as_recorded)["mouth_open_r"] if by_voice else None
    return {**as_recorded, "mouth_open_r_synced": synced, "sync_offset_frames": abs(r.offset_frames),
            "sync_confidence": round(r.confidence, 4) if np.isfinite(r.confidence) else None,
            "in_sync": bool(abs(r.offset_frames) <= 1 and r.confidence >= 0.8 * own.confidence)}


def oracle_track(audio: np.ndarray, text: str, n: int):
    from avcall.models.data.align import align
    from avcall.pipelines.face.lip_model import LipModel

    timing = align(audio, text)
    return LipModel.load().track(timing, n, np.random.default_rng(0), artefacts=False)


def source_of(clip: str) -> str:
    """GRID, LRS2 (read speech to the camera) or the kind of recording the clip's name starts with."""
    return clip.split("_")[0]


def evaluate_talking_face(data: Path, out: Path, progress: bool = True, measure=None,
                          side_by_side_clips: int = SIDE_BY_SIDE, candidate: Path | None = None) -> dict:
    from avcall.models.data.realclips import transcribed_clips
    from avcall.pipelines.nets.sync_judge import SyncJudge
    from avcall.pipelines.nets.voice_to_lips import VoiceToLipsStream

    from avcall.models.data.measure import clip_signals
    from ..sync import judge_accuracy

    data = check_data_dir(data)
    clips = talking_face_clips(data)
    texts = {c.path.name: c.text for c in transcribed_clips(data)}
    judge, net, avatar = SyncJudge(), VoiceToLipsStream(), AvatarRoundTrip()
    candidate = candidate or (Path(os.environ[CANDIDATE_ENV]) if os.environ.get(CANDIDATE_ENV) else None)
    other = VoiceToLipsStream(candidate) if candidate else None
    rows = []
    for k, path in enumerate(tqdm(clips, desc="talking face", disable=not progress)):
        real, audio = clip_signals(path, measure)
        n = len(real.lips)
        own = judge.judge(real.lips, real.opening, real.width, real.face_present, audio)
        tracks = {}
        began = time.perf_counter()
        tracks["avcall-voice"] = net.clip(audio, frames=n)
        fps = len(tracks["avcall-voice"].lips) / max(time.perf_counter() - began, 1e-9)
        if other is not None:
            tracks["avcall-voice-candidate"] = other.clip(audio, frames=n)
        tracks["avcall-reenact"], codec_bytes, motion = reenact_track(real)
        rendered = {"avcall-voice": avatar.frames(tracks["avcall-voice"].lips),
                    "avcall-reenact": avatar.frames(avatar.renderer.neutral_shape + motion)}
        if other is not None:
            rendered["avcall-voice-candidate"] = avatar.frames(tracks["avcall-voice-candidate"].lips)
        if k < side_by_side_clips:
            side_by_side(out.parent / f"{out.stem}_side_by_side" / f"{path.stem}.mp4", path, rendered, audio)
        if path.name in texts:
            tracks["phoneme-oracle"] = oracle_track(audio, texts[path.name], n)
        tracks["static"] = static_track(n)
        for method, track in tracks.items():
            row = {"clip": path.name, "source": source_of(path.name), "method": method, **judged(judge, real, track, audio, own, method in BY_VOICE),
                   "real_confidence": round(own.confidence, 4), "fps": fps if method == "avcall-voice" else None,
                   "codec_kbps": codec_bytes * 8 * real.fps / 1000 if method == "avcall-reenact" else None}
            if method in rendered:  # what a viewer sees: the portrait's mouth, tracked
                seen = judged(judge, real, avatar.retrack(rendered[method]), audio, own, method in BY_VOICE)
                row |= {f"rendered_{key}": value for key, value in seen.items()}
            rows.append(row)
    avatar.close()
    summary = {}
    for method in METHODS:
        sel = [r for r in rows if r["method"] == method]
        if not sel:
            continue

        def mean(key, sel=sel):
            values = [r[key] for r in sel if r[key] is not None]
            return float(np.mean(values)) if values else None

        summary[method] = {"mouth_open_r": mean("mouth_open_r"), "mouth_open_r_synced": mean("mouth_open_r_synced"),
                           "lip_feature_r": mean("lip_feature_r"),
                           "sync_offset_frames": mean("sync_offset_frames"), "sync_confidence": mean("sync_confidence"),
                           "in_sync_share": float(np.mean([r["in_sync"] for r in sel])), "fps": mean("fps"),
                           "n": len(sel), **({"codec_kbps": mean("codec_kbps")} if method == "avcall-reenact" else {})}
        if "rendered_in_sync" in sel[0]:
            summary[method]["rendered"] = {
                "mouth_open_r": mean("rendered_mouth_open_r"),
                "mouth_open_r_synced": mean("rendered_mouth_open_r_synced"),
                "lip_feature_r": mean("rendered_lip_feature_r"),
                "sync_offset_frames": mean("rendered_sync_offset_frames"),
                "in_sync_share": float(np.mean([r["rendered_in_sync"] for r in sel]))}
    by_source = {}
    for method in METHODS:
        for source in sorted({r["source"] for r in rows}):
            sel = [r for r in rows if r["method"] == method and r["source"] == source]
            if sel:
                def mean_of(key, sel=sel):
                    values = [r[key] for r in sel if r.get(key) is not None]
                    return float(np.mean(values)) if values else None
                by_source.setdefault(method, {})[source] = {
                    "n": len(sel), "mouth_open_r": mean_of("mouth_open_r"),
                    "mouth_open_r_synced": mean_of("mouth_open_r_synced"),
                    "rendered_mouth_open_r": mean_of("rendered_mouth_open_r"),
                    "in_sync_share": float(np.mean([r["in_sync"] for r in sel]))}
    report = {"meta": {"data": str(data), "clips": len(clips), "candidate": str(candidate) if candidate else None,
                       "note": "each method's figures are of the lip features that drive the renderer; under "
                               "`rendered`, of the rendered portrait run back through the tracker"},
              "summary": summary, "by_source": by_source, "judge": judge_accuracy(clips, judge, measure), "rows": rows}
    write_report(out, report)
    return report


def format_table(summary: dict) -> str:
    lines = ["| method | mouth-opening r | the same, real clip synced | lip-feature r | |offset| (frames) | confidence "
             "| in sync | fps |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def f(x, fmt=".3f"):
        return "–" if x is None else format(x, fmt)

    for method, s in summary.items():
        lines.append(f"| {method} | {f(s['mouth_open_r'])} | {f(s['mouth_open_r_synced'])} | {f(s['lip_feature_r'])} "
                     f"| {f(s['sync_offset_frames'], '.2f')} | {f(s['sync_confidence'])} | "
                     f"{100 * s['in_sync_share']:.0f}% | {f(s['fps'], '.0f')} |")
        if "rendered" in s:
            r = s["rendered"]
            lines.append(f"| {method}, rendered and re-tracked | {f(r['mouth_open_r'])} "
                         f"| {f(r['mouth_open_r_synced'])} | {f(r['lip_feature_r'])} "
                         f"| {f(r['sync_offset_frames'], '.2f')} | – "
                         f"| {100 * r['in_sync_share']:.0f}% | – |")
    return "\n".join(lines)


def add_arguments(t) -> None:
    t.add_argument("--data", type=Path, metavar="DIR", help="folder with talking_faces/ (default ../shared/data)")
    t.add_argument("--out", type=Path, required=True, metavar="OUT", help="report JSON to write")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    report = evaluate_talking_face(check_data_dir(args.data if args.data is not None else shared_data_dir()),
                                   args.out, progress=not args.quiet)
    print(format_table(report["summary"]))
    print(f"judge: offset within one frame on {report['judge']['offset_within_1_frame']:.3f} of "
          f"{report['judge']['pairs']} shifted real clips; wrote {args.out}")
    return 0
