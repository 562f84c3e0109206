"""`avcall devices`: the cameras and microphones this machine has, or a plain sentence that none is there."""

from __future__ import annotations

import glob
import re

import cv2

from avcall.pipelines.errors import DeviceError
from avcall.pipelines.sources.camera import open_capture
from avcall.pipelines.sources.microphone import import_sounddevice


def list_cameras() -> list[tuple[int, str]]:
    """(index, description) for each /dev/videoN that OpenCV can open and read a frame from."""
    found = []
    for node in sorted(glob.glob("/dev/video*"), key=lambda p: int(re.sub(r"\D", "", p) or 0)):
        index = int(re.sub(r"\D", "", node) or 0)
        capture = open_capture(index)
        try:
            if capture.isOpened() and capture.read()[0]:
                w, h = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
                found.append((index, f"{node} {w}x{h}"))
        finally:
            capture.release()
    return found


def list_audio() -> tuple[list[tuple[int, str]], list[tuple[int, str]], str | None]:
    """(microphones, speakers, why none could be listed)."""
    try:
        sd = import_sounddevice()
        devices = sd.query_devices()
    except DeviceError as err:
        return [], [], str(err)
    except Exception as err:  # noqa: BLE001 - PortAudio with no sound system at all
        return [], [], f"no audio devices: {err}"
    describe = lambda i, d: (i, f"{d['name']} ({int(d['default_samplerate'])} Hz)")  # noqa: E731
    mics = [describe(i, d) for i, d in enumerate(devices) if d["max_input_channels"] > 0]
    speakers = [describe(i, d) for i, d in enumerate(devices) if d["max_output_channels"] > 0]
    return mics, speakers, None


def devices_report() -> str:
    lines = []
    cameras = list_cameras()
    if cameras:
        lines.append("Cameras (pick one with --camera N):")
        lines += [f"  {i}: {desc}" for i, desc in cameras]
    else:
        lines.append("No camera found (looked for /dev/video*).")
    mics, speakers, why = list_audio()
    if why:
        lines.append(f"No microphone or speaker listed: {why}.")
    else:
        if mics:
            lines.append("Microphones (pick one with --mic NAME_OR_INDEX):")
            lines += [f"  {i}: {desc}" for i, desc in mics]
        else:
            lines.append("No microphone found.")
        if speakers:
            lines.append("Speakers (pick one with --speaker NAME_OR_INDEX):")
            lines += [f"  {i}: {desc}" for i, desc in speakers]
        else:
            lines.append("No speaker found.")
    return "\n".join(lines)
