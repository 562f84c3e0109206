"""`--avatar reenact`: the camera's face, through the tracker and the landmark codec, moves the portrait; the
portrait run back through the tracker opens its mouth with the driving face; a face lost or a camera gone
hands the portrait to the voice, in pts order, and the face takes it back."""

from __future__ import annotations

import asyncio
import json
import time

import av
import numpy as np
import pytest
from avcall.pipelines.face.render import PortraitRenderer, render_video
from avcall.pipelines.frames import SAMPLE_RATE, AudioFrame, VideoFrame
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.stages.face_tracker import FaceTracker
from avcall.pipelines.stages.lip_features import LipFeatureExtractor
from avcall.pipelines.face.mesh import lip_features
from avcall.pipelines.stages.talking_face import TalkingFace

from tests.conftest import run_cli
from tests.models.test_render import driving_track
from tests.pipelines.test_sinks import Frames

FPS = 25
FACE_GAP_MAX = 0.5 + 1.5 / FPS  # a camera gone: its last frame stays up for FACE_LOST_S, then the voice draws


class Paced(Frames):
    """The frames at real time, as a camera and a microphone deliver them."""

    async def recv(self):
        if not hasattr(self, "began"):
            self.began = time.monotonic()
        if self.frames:
            await asyncio.sleep(max(0.0, self.began + self.frames[0].pts - time.monotonic()))
        return await super().recv()


@pytest.fixture(scope="module")
def driver() -> tuple[PortraitRenderer, object]:
    renderer = PortraitRenderer(seed=3)
    return renderer, driving_track(renderer.neutral_shape, 4.0, seed=5)


def openings(images: list[np.ndarray]) -> np.ndarray:
    tracker = FaceTracker(max_faces=1)
    tracker.open()
    try:
        return np.array([lip_features(tracker.observe(VideoFrame(pts=i / FPS, image=im, index=i))).opening
                         for i, im in enumerate(images)])
    finally:
        tracker.close()


def test_process_reenact_moves_the_portrait_with_the_camera_face(driver, tmp_path):
    renderer, track = driver
    voice = (0.05 * np.random.default_rng(0).standard_normal(4 * SAMPLE_RATE)).astype(np.float32)
    render_video(tmp_path / "camera.mp4", track, voice, seed=3)
    r = run_cli("process", str(tmp_path / "camera.mp4"), "-o", str(tmp_path / "out"), "--avatar", "reenact", "-q")
    assert r.returncode == 0, r.stderr
    with av.open(str(tmp_path / "out" / "annotated.mp4")) as c:
        images = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert images[0].shape == (256, 256, 3) and abs(len(images) - len(track)) <= 1
    seen = openings(images)
    n = min(len(seen), len(track))
    r_opening = np.corrcoef(seen[:n], track.opening[:n])[0, 1]
    assert r_opening >= 0.8, r_opening
    counts = json.loads((tmp_path / "out" / "telemetry.json").read_text())["incidents"]["counts"]
    kbps = counts["avatar_codec_bytes"] * 8 * FPS / counts["avatar_codec_frames"] / 1000
    assert counts["avatar_codec_frames"] == len(track) and kbps < 8, counts
    assert counts.get("avatar_voice_fallback", 0) == 0 and counts["avatar_reenact"] == 1


def call(driver, faces_until: float, blank: tuple[float, float] | None, camera_until: float, seconds: float):
    """Camera frames of the driving face (grey frames in `blank`, none after `camera_until`) and a voice."""
    renderer, track = driver
    grey = np.full((256, 256, 3), 120, np.uint8)
    frames = []
    for i in range(round(min(camera_until, seconds) * FPS)):
        t = i / FPS
        face = t < faces_until and not (blank and blank[0] <= t < blank[1])
        image = renderer.render(track.lips[i % len(track)], t) if face else grey
        frames.append(VideoFrame(pts=t, image=image, index=i))
    rng = np.random.default_rng(1)
    for k in range(round(seconds * 100)):
        frames.append(AudioFrame(pts=k / 100, samples=(0.05 * rng.standard_normal(160)).astype(np.float32)))
    return sorted(frames, key=lambda f: f.pts)


def run_avatar(frames, live: bool):
    avatar = TalkingFace(mode="reenact", live=live)
    out = []
    pipeline = Pipeline([Paced(frames) if live else Frames(frames)], [FaceTracker(max_faces=1), LipFeatureExtractor(), avatar], live=False,
                        on_output=out.append)
    asyncio.run(pipeline.run())
    video = [f for f in out if isinstance(f, VideoFrame)]
    return video, pipeline.incidents.summary()["events"]


def test_a_lost_face_hands_the_portrait_to_the_voice_and_back(driver):
    video, events = run_avatar(call(driver, 3.0, (1.0, 2.2), 3.0, 3.0), live=False)
    pts = np.array([f.pts for f in video])
    assert np.all(np.diff(pts) > 0) and all(f.image.shape == (256, 256, 3) for f in video)
    assert np.diff(pts).max() <= 1.5 / FPS  # no gap: the held face, then the voice, then the face again
    kinds = [(e["kind"], e.get("why")) for e in events if e["kind"].startswith("avatar")]
    assert kinds == [("avatar_reenact", None), ("avatar_voice_fallback", "no face"), ("avatar_reenact", None)]
    fell, back = [e["pts"] for e in events if e["kind"].startswith("avatar")][1:]
    assert 1.44 <= fell <= 1.56 and 2.2 <= back <= 2.32  # the last face at 0.96 s, held FACE_LOST_S


def test_a_camera_gone_live_hands_the_portrait_to_the_voice(driver):
    video, events = run_avatar(call(driver, 3.0, None, 1.0, 3.0), live=True)
    pts = np.array([f.pts for f in video])
    assert np.all(np.diff(pts) > 0)
    assert pts[-1] >= 2.8  # the voice went on drawing after the camera's last frame at 0.96 s
    assert np.diff(pts).max() <= FACE_GAP_MAX
    fallback = [e for e in events if e["kind"] == "avatar_voice_fallback"]
    assert len(fallback) == 1 and fallback[0]["why"] == "no camera frames" and 1.4 <= fallback[0]["pts"] <= 1.6

