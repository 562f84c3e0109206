"""The served page in a real headless Chromium, on loopback: its fake camera and microphone play a talking
face the project renders (a .y4m and a .wav), `avcall serve` runs as users start it, and the test checks
what the page got back: the server tracked the face, the enhanced voice came back and matches the
enhancer's offline output on the same clip, and caption events with the clip's words arrived on the data
channel. It also leaves a screenshot of the page (AVCALL_SCREENSHOTS=DIR keeps a copy there). And headless
Firefox with its own fake devices: the page starts a call the server sees connect, audio and video flowing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avcall.models.data.align import normalise
from tests.conftest import needs_emotion_weights

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.usefixtures("ice_address")
needs_chromium = [
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="chromium and chromium-driver are not installed (.ci/run installs them)"),
    pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (scripts/setup.sh)"),
]
LINE = "please call me back tomorrow morning"
WORDS = {"please", "call", "back", "tomorrow", "morning"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fake_media(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """The talking portrait saying LINE as Chromium's fake devices want it: 320x240 y4m, 48 kHz wav;
    and the clip's audio at 16 kHz."""
    from avcall.models.data.portrait import write_talking_portrait
    from avcall.app.eval.data import load_audio

    folder = tmp_path_factory.mktemp("browser")
    clip = folder / "talk.mp4"
    assert write_talking_portrait(clip, LINE)
    y4m, wav = folder / "talk.y4m", folder / "talk.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip), "-vf", "scale=320:240,fps=25",
                    "-pix_fmt", "yuv420p", str(y4m), "-vn", "-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le",
                    str(wav)], check=True, timeout=120)
    return y4m, wav, load_audio(wav)


@pytest.fixture
def served(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "avcall.app.cli", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def chromium(y4m: Path, wav: Path, profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-sync", "--autoplay-policy=no-user-gesture-required", "--window-size=1200,900",
                 f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav}",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def poll_page(driver, script: str, condition, timeout: float) -> dict:
    """What `script` returns, once `condition` holds of it or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        now = driver.execute_script(script) or {}
        if condition(now) or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


def envelope(x: np.ndarray, rate: int) -> np.ndarray:
    """10 ms log energy, floored 40 dB under the peak (silence is silence, whatever the codec puts there)."""
    hop = rate // 100
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    return np.maximum(db, db.max() - 40)


def best_correlation(received: np.ndarray, reference: np.ndarray) -> float:
    """The highest Pearson r of the reference's 10 ms log-energy envelope against any stretch of the received
    one (Chromium loops the file and the call starts anywhere in it)."""
    n = len(reference)
    best = -1.0
    for lag in range(0, len(received) - n + 1):
        part = received[lag:lag + n]
        if part.std() > 0:
            best = max(best, float(np.corrcoef(part, reference)[0, 1]))
    return best


@needs_chromium[0]
@needs_chromium[1]
def test_the_page_in_chromium(fake_media, served, tmp_path):
    y4m, wav, clip_audio = fake_media
    driver = chromium(y4m, wav, tmp_path / "profile")
    try:
        driver.get(f"{served}/?autostart=1&record=1")
        deadline = time.monotonic() + 90
        finals: list[str] = []
        state = telemetry = None
        while time.monotonic() < deadline:
            state = driver.execute_script("return window.avcall && window.avcall.state")
            telemetry = driver.execute_script("return window.avcall && window.avcall.telemetry")
            captions = driver.execute_script("return window.avcall ? window.avcall.captions : []") or []
            finals = [c["text"] for c in captions if c.get("kind") == "final"]
            heard = set(normalise(" ".join(finals)))  # Whisper's captions have case and punctuation
            if state == "connected" and telemetry and telemetry.get("face") and len(WORDS & heard) >= 2:
                break
            time.sleep(0.5)
        time.sleep(2.5 * len(clip_audio) / 16_000)  # the recording holds a whole loop of the clip somewhere
        shot = tmp_path / "serve.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("AVCALL_SCREENSHOTS"):
            shutil.copy(shot, Path(os.environ["AVCALL_SCREENSHOTS"]) / "serve.png")
        recording = driver.execute_script("return window.avcall.takeRecording()")
    finally:
        driver.quit()
    assert state == "connected"
    assert telemetry and telemetry["face"], telemetry  # the server tracked the face in the page's camera
    assert telemetry["audio_delay_ms"] is not None
    heard = set(normalise(" ".join(finals)))  # Whisper's captions have case and punctuation
    assert len(WORDS & heard) >= 2, finals  # the clip's words came as captions on the data channel
    # the voice that came back is the enhancer's output on this clip (or the clip itself without weights)
    from avcall.pipelines.suppressors import open_suppressor
    from avcall.pipelines.features import enhancers

    shipped = enhancers()
    expected = open_suppressor(shipped[0]).enhance_clip(clip_audio) if shipped else clip_audio
    rate = int(recording["rate"])
    received = np.asarray(recording["samples"], np.float32)
    sf.write(tmp_path / "received.wav", received, rate)
    assert len(received) > 3 * rate
    r = best_correlation(envelope(received, rate), envelope(expected, 16_000))
    assert r > 0.6, r


@needs_chromium[0]
@needs_chromium[1]
@needs_emotion_weights
def test_the_mood_opt_in_in_chromium(fake_media, served, tmp_path):
    """Off by default: no reading, no badge. The user ticks "Read my mood": readings arrive on window.avcall
    and the badge and the indicator show. Unticked: the panel goes and stays empty."""
    from selenium.webdriver.common.by import By

    y4m, wav, _ = fake_media
    driver = chromium(y4m, wav, tmp_path / "profile")
    api = "return window.avcall && {state: window.avcall.state, telemetry: window.avcall.telemetry, " \
          "emotion: window.avcall.emotion}"

    def poll(condition, timeout: float) -> dict:
        return poll_page(driver, api, condition, timeout)

    try:
        driver.get(f"{served}/?autostart=1")
        off = poll(lambda s: s.get("state") == "connected" and (s.get("telemetry") or {}).get("face"), 60)
        time.sleep(2.0)  # two more seconds of the call with it off
        off = driver.execute_script(api)
        badge = driver.find_element(By.ID, "mood-badge")
        off_badge = badge.is_displayed()
        driver.find_element(By.ID, "emotion").click()
        on = poll(lambda s: len(s["emotion"]["readings"]) >= 8 and s["telemetry"].get("emotion") == "on", 30)
        on_badge, badge_text = badge.is_displayed(), badge.text
        shown = driver.find_element(By.ID, "mood-leading").text
        shot = tmp_path / "serve_emotion.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("AVCALL_SCREENSHOTS"):
            shutil.copy(shot, Path(os.environ["AVCALL_SCREENSHOTS"]) / "serve_emotion.png")
        driver.find_element(By.ID, "emotion").click()
        time.sleep(2.0)
        after = driver.execute_script(api)
        after_badge = badge.is_displayed()
    finally:
        driver.quit()
    assert off["state"] == "connected" and off["telemetry"]["emotion"] == "off", off["telemetry"]
    assert off["emotion"] == {"on": False, "readings": [], "latest": None} and not off_badge
    assert on["emotion"]["on"] and len(on["emotion"]["readings"]) >= 8, on["emotion"]
    latest = on["emotion"]["latest"]
    assert set(latest) >= {"t", "probs", "valence", "arousal", "leading", "confidence", "sources"}
    assert len(latest["probs"]) == 7 and latest["leading"] in latest["probs"] and 0 <= latest["confidence"] <= 1
    assert any("face" in r["sources"] for r in on["emotion"]["readings"])  # the page's camera face was read
    assert on_badge and badge_text == "emotion reading on" and shown.startswith(latest["leading"])
    assert not after["emotion"]["on"] and after["emotion"]["readings"] == [] and not after_badge
    assert after["telemetry"]["emotion"] == "off"


@needs_chromium[0]
@needs_chromium[1]
def test_the_avatar_toggle_in_chromium(fake_media, served, tmp_path):
    """The page's camera with the lip tracking drawn from landmarks, and no video from the server, until its user
    picks a portrait: then the server sends video, moved by the face (the landmark codec's few bytes a frame),
    then by the voice; back to the camera on "my camera", and the server's video stops."""
    from avcall.pipelines.runtime import weights_path
    from selenium.webdriver.support.ui import Select

    if not weights_path("talking_face.onnx").is_file():
        pytest.skip("the voice-to-lips net is not shipped in models/weights/")
    y4m, wav, _ = fake_media
    driver = chromium(y4m, wav, tmp_path / "profile")
    seen = "const v = document.getElementById('remote'); " \
           "return {state: window.avcall && window.avcall.state, telemetry: window.avcall && window.avcall.telemetry, " \
           "width: v.videoWidth, height: v.videoHeight, remote_shown: !v.hidden, " \
           "view_shown: !document.getElementById('view').hidden, paired: window.avcall.overlay.paired}"

    def poll(condition, timeout: float) -> dict:
        return poll_page(driver, seen, condition, timeout)

    def mode(now: dict, name: str) -> bool:
        return (now.get("telemetry") or {}).get("avatar") == name

    def sent(now: dict) -> int:
        return (now.get("telemetry") or {}).get("video_frames_sent", -1)

    try:
        driver.get(f"{served}/?autostart=1")
        camera = poll(lambda s: s.get("state") == "connected" and (s.get("telemetry") or {}).get("face")
                      and s["paired"] > 25, 60)
        picker = Select(driver.find_element("id", "avatar"))
        picker.select_by_value("reenact")
        face = poll(lambda s: mode(s, "reenact") and s["width"] == 256  # 2 s of faces: its rate past the key packet
                    and s["telemetry"]["incidents"].get("avatar_codec_frames", 0) >= 50, 30)
        shot = tmp_path / "serve_avatar.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("AVCALL_SCREENSHOTS"):
            shutil.copy(shot, Path(os.environ["AVCALL_SCREENSHOTS"]) / "serve_avatar.png")
        picker.select_by_value("voice")
        voice = poll(lambda s: mode(s, "voice") and s["width"] == 256, 30)
        picker.select_by_value("off")
        back = poll(lambda s: mode(s, "off") and s["view_shown"], 30)
        time.sleep(1.0)  # what was in flight when it was switched off
        back = driver.execute_script(seen)
        time.sleep(2.0)
        later = driver.execute_script(seen)
    finally:
        driver.quit()
    assert camera["telemetry"]["avatar"] == "off" and sent(camera) == 0, camera  # no video encoded
    assert camera["view_shown"] and not camera["remote_shown"] and camera["paired"] > 25, camera
    assert mode(face, "reenact") and (face["width"], face["height"]) == (256, 256), face
    assert face["remote_shown"] and not face["view_shown"] and sent(face) > 25, face  # the talking face is video
    assert face["telemetry"]["avatar_codec_bytes_per_frame"] * 8 * 25 < 8000  # under 8 kbit/s at 25 fps
    assert face["telemetry"]["incidents"].get("avatar_reenact", 0) >= 1  # the face drove it, not the voice
    assert mode(voice, "voice") and voice["width"] == 256 and sent(voice) > sent(face), voice
    assert mode(back, "off") and back["view_shown"] and not back["remote_shown"], back
    assert sent(later) == sent(back) and later["paired"] > back["paired"], (back, later)  # landmarks again


FIREFOX = shutil.which("firefox") or shutil.which("firefox-esr")
FIREFOX_PREFS = {
    "media.navigator.streams.fake": True,  # a synthetic camera and microphone, no prompt
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.enabled": False,
    "network.captive-portal-service.enabled": False,
}


@pytest.mark.skipif(FIREFOX is None, reason="firefox-esr is not installed")
def test_the_page_in_firefox(tmp_path):
    """Firefox (headless, its fake devices) opens the page, which starts a call by itself: the server sees
    the peer connect and its audio and video flow through the pipeline."""
    import asyncio
    import json as json_module
    import threading

    from aiohttp import web

    from avcall.app.serve import Server, ServeConfig

    profile = tmp_path / "firefox"
    profile.mkdir()
    (profile / "user.js").write_text("".join(f'user_pref("{k}", {json_module.dumps(v)});\n'
                                             for k, v in FIREFOX_PREFS.items()))
    server = Server(ServeConfig(captions=False))
    server.load_models()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(server.app())
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        state["port"], state["runner"] = site._server.sockets[0].getsockname()[1], runner
        started.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_default_executor())  # its resolver threads end with it
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30)
    browser = subprocess.Popen([FIREFOX, "--headless", "--no-remote", "--profile", str(profile),
                                f"http://127.0.0.1:{state['port']}/?autostart=1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for peer in list(server.peers.values()):
                tel = peer.line.pipeline.telemetry() if peer.line.pipeline else {}
                seen = {"state": peer.pc.connectionState,
                        "audio": tel.get("level_in", {}).get("frames_in", 0),
                        "video": tel.get("face_tracker", {}).get("frames_in", 0)}
            if seen.get("state") == "connected" and seen["audio"] > 200 and seen["video"] > 10:
                break
            time.sleep(0.5)
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=20)
        except subprocess.TimeoutExpired:
            browser.kill()
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    assert seen.get("state") == "connected", seen
    assert seen["audio"] > 200 and seen["video"] > 10, seen  # 2 s of audio hops and some frames came in


class ServerThread:
    """`avcall serve`'s server in a thread of this process (its own event loop), so that a test reads what the
    server's calls computed; `on_loop(fn)` runs fn there and returns its result."""

    def __init__(self, cfg) -> None:
        import asyncio
        import threading

        from avcall.app.serve import Server

        self.server = Server(cfg)
        self.server.load_models()
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        import asyncio

        from aiohttp import web

        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.server.app())
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()

    def __enter__(self):
        self._thread.start()
        assert self._started.wait(30)
        return self

    def on_loop(self, fn):
        import asyncio

        async def call():
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(30)

    def __exit__(self, *exc) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def _lip_offsets(sent: dict, snap: dict, tracked: np.ndarray, span: int = 3) -> dict[int, float]:
    """The mean distance (px) of the lips tracked in the picture the page drew from the server's lips k frames
    from those the page drew on it, for k in -span..span."""
    order = sorted(sent)
    i = order.index(snap["pts"])
    return {k: float(np.linalg.norm(sent[order[i + k]][:40] - tracked, axis=1).mean())
            for k in range(-span, span + 1) if 0 <= i + k < len(order)}


@pytest.fixture(scope="module")
def panning_media(fake_media) -> tuple[Path, Path]:
    """The talking portrait panning left and right (up to 4.5 px a frame): no two frames alike, so a picture a
    frame early or late has its lips a few pixels away."""
    y4m, wav, _ = fake_media
    panned = y4m.with_name("pan.y4m")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(y4m), "-vf",
                    "scale=400:300,crop=320:240:x='40+36*sin(2*PI*n/50)':y=30", "-pix_fmt", "yuv420p", str(panned)],
                   check=True, timeout=120)
    return panned, wav


@needs_chromium[0]
@needs_chromium[1]
def test_the_overlay_drawn_from_landmarks_in_chromium(panning_media, tmp_path):
    """No video comes back while the talking face is off: the page draws the server's landmarks over its own
    camera's frames (a panning portrait). The lips it drew are the server's for that frame (the same points, the
    same pts), and the picture under them is the frame the server saw: the lips tracked again in that picture
    (here, by the test) are nearest the server's lips of the same frame or one beside it, not two or three
    frames away."""
    import base64

    import cv2

    from avcall.app.serve import ServeConfig
    from avcall.pipelines.frames import VideoFrame
    from avcall.pipelines.stages.face_tracker import FaceTracker
    from avcall.pipelines.face.mesh import INNER_CONTOUR, OUTER_CONTOUR

    y4m, wav = panning_media
    api = "return window.avcall && {state: window.avcall.state, telemetry: window.avcall.telemetry, " \
          "overlay: {paired: window.avcall.overlay.paired, drawn: window.avcall.overlay.drawn, " \
          "received: window.avcall.overlay.received, history: window.avcall.overlay.history}}"
    snaps: list[dict] = []
    with ServerThread(ServeConfig(captions=False)) as served:
        driver = chromium(y4m, wav, tmp_path / "profile")
        try:
            driver.get(f"http://127.0.0.1:{served.port}/?autostart=1")
            page = poll_page(driver, api, lambda s: s.get("state") == "connected"
                             and s["overlay"]["paired"] >= 75, 90)  # 3 s of frames drawn with their landmarks
            for _ in range(16):
                snap = driver.execute_script("return window.avcall.overlay.snapshot()")
                if snap and all(s["pts"] != snap["pts"] for s in snaps):
                    snaps.append(snap)
                time.sleep(0.25)
            page = driver.execute_script(api)
            shot = tmp_path / "serve_overlay.png"
            driver.save_screenshot(str(shot))
            if os.environ.get("AVCALL_SCREENSHOTS"):
                shutil.copy(shot, Path(os.environ["AVCALL_SCREENSHOTS"]) / "serve_overlay.png")
            (peer,) = served.on_loop(lambda: list(served.server.peers.values()))
            sent = served.on_loop(lambda: dict(peer.line.call.roles["overlay"].recent))
            video_out = served.on_loop(lambda: peer.line.video_out.sent if peer.line.video_out else 0)
        finally:
            driver.quit()
    telemetry, overlay = page["telemetry"], page["overlay"]
    assert page["state"] == "connected" and telemetry["face"], telemetry
    assert video_out == 0 and telemetry["video_frames_sent"] == 0  # nothing encoded: the talking face is off
    assert telemetry["landmarks_sent"] > 75 and telemetry["landmark_bytes_per_frame"] < 1200, telemetry
    assert overlay["paired"] >= 75 and len(snaps) >= 8, (overlay["paired"], len(snaps))
    # the page paired each frame with the landmarks of its capture time: the same frame, well within one
    skews = [h["frame_capture_ms"] - h["capture_ms"] for h in overlay["history"]]
    # the lips drawn are the server's for that pts, to the quarter pixel they travel in
    drawn_err = [float(np.abs(np.asarray(s["lips"]) - sent[s["pts"]][:40]).max()) for s in snaps if s["pts"] in sent]
    tracker = FaceTracker(max_faces=1, tracking="full")
    tracker.open()
    offsets, err_same, best = [], [], []
    try:
        for snap in snaps:
            png = base64.b64decode(snap["image"].split(",", 1)[1])
            image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
            obs = tracker.observe(VideoFrame(pts=0.0, image=image, index=0))
            if not obs.present or snap["pts"] not in sent:
                continue
            tracked = obs.landmarks[list(OUTER_CONTOUR) + list(INNER_CONTOUR), :2]
            errors = _lip_offsets(sent, snap, tracked)
            offsets.append(errors)
            err_same.append(errors[0])
            best.append(min(errors, key=errors.get))
    finally:
        tracker.close()
    near = [np.median([e[k] for e in offsets if k in e]) for k in (-2, 2)]
    print(f"overlay: {overlay['paired']} frames drawn with landmarks ({overlay['drawn']} in all); capture-time "
          f"skew frame - landmarks: median {np.median(skews):.1f} ms, max |skew| {np.max(np.abs(skews)):.1f} ms; "
          f"drawn vs sent lips max {max(drawn_err):.2f} px; lips tracked again in the drawn picture vs the "
          f"server's of the same frame: median {np.median(err_same):.2f} px (two frames before / after: "
          f"{near[0]:.2f} / {near[1]:.2f} px); the server frame they match best, in frames from the one drawn: "
          f"{best}; {telemetry['landmark_bytes_per_frame']} B/frame")
    for errors in offsets:
        print("   ", {k: round(v, 2) for k, v in errors.items()})
    assert max(np.abs(skews)) < 20, skews  # paired within half a frame of 40 ms
    assert len(drawn_err) >= 8 and max(drawn_err) <= 0.25 + 1e-6, drawn_err
    assert len(best) >= 6, offsets
    assert sum(abs(k) <= 1 for k in best) >= 0.8 * len(best), best  # the picture is the frame the server saw
    assert np.median(err_same) < min(near), (err_same, near)
