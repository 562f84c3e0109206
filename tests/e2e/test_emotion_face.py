"""Emotion on a real clip with sound reads the face, not the voice alone, even on a busy machine: the audio
skips the tracker and runs seconds ahead of the faces, so each reading must wait for the face of its time."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.conftest import needs_emotion_weights, run_cli

CLIP = "talking_faces/SadTalker_WDA_KatieHill_000.mp4"


@needs_emotion_weights
def test_readings_use_the_tracked_face_under_load(shared_data, tmp_path):
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # load beside it, one core
    try:
        result = run_cli("process", str(shared_data / CLIP), "-o", str(tmp_path), "--emotion", "-q")
    finally:
        busy.kill()
        busy.wait()
    assert result.returncode == 0, result.stderr[-2000:]
    readings = [json.loads(line) for line in (tmp_path / "emotion.jsonl").read_text().splitlines()]
    lips = np.load(tmp_path / "lips.npz")
    pts, present = lips["pts"], lips["face_present"]

    def tracked(t: float) -> bool:  # the face shown at t: the latest video frame at or before it
        i = np.searchsorted(pts, t + 1e-6) - 1
        return i >= 0 and bool(present[i])

    while_tracked = [r for r in readings if tracked(r["pts"])]
    assert len(while_tracked) >= 25  # 8 s at 4 readings a second, the face in every frame
    with_face = sum("face" in r["sources"] for r in while_tracked)
    assert with_face >= 0.9 * len(while_tracked), f"{with_face} of {len(while_tracked)} readings used the face"
