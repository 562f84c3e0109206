"""The virtual microphone call apps pick: a null sink the clean voice plays into, and a source remapped from
that sink's monitor, named "avcall microphone" (a monitor source is hidden or listed last by most call apps;
a remapped source is listed like a real microphone).

Both modules carry `avcall.pid=PID` in their properties: at the next start, modules whose run is gone (killed
with SIGKILL, or a crash) are unloaded before new ones are made; modules of a run still alive are left alone
and the new run says so in one line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .errors import DeviceError

SINK = "avcall_voice"
SOURCE = "avcall_mic"
DESCRIPTION = "avcall microphone"
TAG = "avcall.pid"
_OWNER = re.compile(re.escape(TAG) + r"=(\d+)")


@dataclass
class VirtualMic:
    sink: str = SINK
    source: str = SOURCE
    modules: list[int] = field(default_factory=list)  # the module indices, loaded in this order


@dataclass(frozen=True)
class LoadedModule:
    index: int
    name: str
    owner: int  # the pid of the avcall run that loaded it


def tagged_modules(pulse) -> list[LoadedModule]:
    """The modules a run of avcall loaded, found by their tag."""
    found = []
    for module in pulse.module_list():
        owner = _OWNER.search(module.argument or "")
        if owner:
            found.append(LoadedModule(module.index, module.name, int(owner.group(1))))
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale(pulse) -> list[LoadedModule]:
    """Unload the modules left by runs that are gone; returns them. The remapped source first: it holds
    the sink's monitor."""
    stale = [m for m in tagged_modules(pulse) if m.owner != os.getpid() and not pid_alive(m.owner)]
    for module in sorted(stale, key=lambda m: m.name != "module-remap-source"):
        pulse.module_unload(module.index)
    return stale


def create(pulse) -> VirtualMic:
    """Load the sink and the source (after removing stale ones); a DeviceError if another live run has them."""
    remove_stale(pulse)
    others = {m.owner for m in tagged_modules(pulse) if m.owner != os.getpid()}
    if others:
        raise DeviceError(f"another `avcall live` (pid {min(others)}) is the avcall microphone now; "
                          f"end it first, or run this one with --mic-out off")
    tag = f"{TAG}={os.getpid()}"
    mic = VirtualMic()
    try:
        # 48 kHz mono, what call apps capture; the voice is played into it at 16 kHz and resampled by the server
        mic.modules.append(pulse.module_load("module-null-sink", [
            f"sink_name={SINK}", "rate=48000", "channels=1", "channel_map=mono",
            f"sink_properties='device.description=\"avcall voice (feeds avcall microphone)\" {tag}'"]))
        mic.modules.append(pulse.module_load("module-remap-source", [
            f"source_name={SOURCE}", f"master={SINK}.monitor", "channels=1", "channel_map=mono",
            f"source_properties='device.description=\"{DESCRIPTION}\" device.icon_name=audio-input-microphone "
            f"{tag}'"]))
    except Exception as err:  # pulsectl.PulseOperationFailed: a server without these modules
        remove(pulse, mic)
        raise DeviceError(f"the sound server would not make the avcall microphone ({err}); "
                          f"run with --mic-out off and --output NAME to play the voice elsewhere") from None
    return mic


def remove(pulse, mic: VirtualMic | None = None) -> None:
    """Unload the modules this process loaded, found by their tag (so a server restarted meanwhile, whose
    indices are new, loses nothing it should keep), the source before the sink."""
    own = [m for m in tagged_modules(pulse) if m.owner == os.getpid()]
    for module in sorted(own, key=lambda m: m.name != "module-remap-source"):
        pulse.module_unload(module.index)
    if mic is not None:
        mic.modules.clear()
