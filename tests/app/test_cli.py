"""The command line as a user meets it: help, devices, bench and demo."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.conftest import run_cli, write_media


def test_help_names_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("demo", "process", "live", "serve", "devices", "bench"):
        assert command in result.stdout


def test_process_help_explains_the_outputs():
    result = run_cli("process", "--help")
    assert result.returncode == 0
    for word in ("annotated.mp4", "lips.npz", "telemetry.json", "--camera", "--mic", "--face-model"):
        assert word in result.stdout


def test_enhance_help_names_what_runs_and_only_what_ships():
    from avcall.pipelines.suppressors import BACKENDS, DEFAULT
    from avcall.pipelines.features import enhancers

    for command in ("process", "live"):
        text = " ".join(run_cli(command, "--help").stdout.split())
        assert "lip-guided" not in text and "noise suppressor" in text and DEFAULT in text
        for name in BACKENDS:
            assert (f"{name} (" in text) == (name in enhancers())


def test_devices_answers_in_plain_sentences_without_devices():
    result = run_cli("devices")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "camera" in result.stdout.lower() and "microphone" in result.stdout.lower()


def test_missing_camera_is_a_one_line_error(tmp_path):
    result = run_cli("process", "--camera", "57", "--seconds", "1", "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "--camera" in result.stderr and "Traceback" not in result.stderr


def test_live_without_devices_is_a_one_line_error(tmp_path):
    result = run_cli("live", "--camera", "57", "--seconds", "1", "--no-window", "--record", str(tmp_path / "rec"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("avcall: error:") and "Traceback" not in result.stderr
    assert "camera" in result.stderr


def test_missing_face_model_is_a_clear_error(tmp_path):
    clip = write_media(tmp_path / "clip.mp4", seconds=0.4, size=(64, 48))
    bogus = tmp_path / "face.task"
    bogus.write_bytes(b"not a task bundle")
    for model, expected in ((tmp_path / "none.task", "no such file"), (bogus, "not a mediapipe")):
        result = run_cli("process", str(clip), "-o", str(tmp_path / "out"), "--face-model", str(model), "-q")
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_bench_tracking_writes_json(tmp_path, shared_data):
    out = tmp_path / "bench.json"
    result = run_cli("bench", "tracking", "--frames", "30", "--clips", "1", "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["frames"] == 30 and report["face_found_share"] > 0.9
    assert 0 < report["ms_per_frame"]["p50"] <= report["ms_per_frame"]["max"]
    assert set(report["by_path"]) == {"crop", "full"} and report["command"] and report["commit"]
    assert report["accuracy"]["clips"] == 1 and report["accuracy"]["summary"]["crop"]["lip_px"] < 1.0


def test_bench_enhance_prices_each_suppressor_in_the_whole_call(tmp_path):
    """`bench enhance --whole-call CLIP`: the whole call without a suppressor, then with each asked for, and
    what each adds (the call without one is `--enhance off`, as a user asks for it)."""
    clip = write_media(tmp_path / "call.mp4", seconds=2.0, size=(160, 120))
    out = tmp_path / "enhance.json"
    result = run_cli("bench", "enhance", "--seconds", "2", "--backend", "dtln", "--whole-call", str(clip),
                     "-o", str(out))
    assert result.returncode == 0, result.stderr
    call = json.loads(out.read_text())["whole_call"]
    assert set(call) >= {"no enhancement", "dtln"} and call["no enhancement"]["cpu_per_media_s"] > 0
    assert "added_cpu_per_media_s" in call["dtln"]


def test_demo_runs_without_camera_or_download(tmp_path):
    result = run_cli("demo", "-o", str(tmp_path / "demo"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "face found in" in result.stdout and "report:" in result.stdout
    out = tmp_path / "demo"
    for name in ("input.mp4", "annotated.mp4", "captions.vtt", "report.html"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.html").read_text()
    for section in ("Spectrograms", "Captions", "Against the peers", "Latency per stage"):
        assert section in report
    assert "noisy" in report and "rnnoise" in report
    from avcall.pipelines.features import available

    if available("emotion"):  # the emotion timeline, with its caption on what the fusion was trained on
        assert (out / "emotion.png").stat().st_size > 0 and "<h2>Emotion</h2>" in report
        assert "label-matched pairs from different people" in report and "emotion:" in result.stdout
    screenshot_report(out / "report.html", tmp_path)


def screenshot_report(report, tmp_path):
    """The report as a reader sees it, in headless Chromium (AVCALL_SCREENSHOTS=DIR keeps a copy)."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-background-networking", "--no-first-run",
                 "--window-size=1000,1400", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(report.resolve().as_uri())
        assert "avcall demo" in driver.title
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    if os.environ.get("AVCALL_SCREENSHOTS"):
        shutil.copy(shot, Path(os.environ["AVCALL_SCREENSHOTS"]) / "report.png")


def test_ctrl_c_finishes_what_was_read_and_leaves_whole_outputs(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import av

    clip = write_media(tmp_path / "long.mp4", seconds=60.0, size=(320, 240))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "avcall.app.cli", "process", str(clip), "-o", str(out), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopped early" in stdout and "Traceback" not in stderr
    with av.open(str(out / "annotated.mp4")) as container:  # closed properly: the trailer is there
        frames = sum(1 for _ in container.decode(video=0))
    assert 0 < frames < 1500
    assert json.loads((out / "telemetry.json").read_text())["interrupted"] is True
