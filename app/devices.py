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


def sound_server_report() -> list[str]:
    """The sound server's sources and sinks (the names --mic and --far-end take) and the avcall microphone."""
    from avcall.pipelines import pulse, virtual_mic

    with pulse.session() as server:
        if server is None:
            return ["No sound server (PulseAudio or PipeWire) answers: `avcall live` plays the voice on an output "
                    "device (a virtual cable: docs/call_apps.md)."]
        info = server.server_info()
        sources, sinks = pulse.sources(server), pulse.sinks(server)
        owners = {m.owner for m in virtual_mic.tagged_modules(server)}
    lines = [f"Sound server: {info.server_name} {info.server_version}."]
    mic = pulse.find(sources, virtual_mic.SOURCE)
    if mic is not None:
        lines.append(f"The avcall microphone: {mic.description!r} ({mic.name}), made by avcall live "
                     f"(pid {', '.join(map(str, sorted(owners)))}).")
    else:
        lines.append(f"The avcall microphone: {virtual_mic.DESCRIPTION!r} ({virtual_mic.SOURCE}) appears while "
                     f"`avcall live` runs.")
    lines.append("Sound-server sources (pick the microphone with --mic NAME):")
    lines += [f"  {d.name}: {d.description}" for d in sources
              if d.name not in (virtual_mic.SOURCE, f"{virtual_mic.SINK}.monitor")]
    lines.append("Sound-server outputs (the echo control listens to one: --far-end NAME, default the default one):")
    lines += [f"  {d.name}: {d.description}" for d in sinks if d.name != virtual_mic.SINK]
    return lines


def virtual_camera_report() -> str:
    """The loopback devices a virtual camera can use (v4l2loopback names its devices in sysfs)."""
    from avcall.pipelines.sinks.virtual_camera import missing_camera

    found = []
    for name in sorted(glob.glob("/sys/devices/virtual/video4linux/video*/name")):
        node = "/dev/" + name.split("/")[-2]
        try:
            label = open(name).read().strip()
        except OSError:
            continue
        found.append(f"{node} ({label})")
    if found:
        return "Virtual cameras (--camera-out, default the first free one): " + ", ".join(found) + "."
    return f"No virtual camera for --camera-out: {missing_camera()}."


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
    lines += sound_server_report()
    lines.append(virtual_camera_report())
    return "\n".join(lines)
