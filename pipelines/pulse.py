"""The sound server: PulseAudio, or PipeWire's PulseAudio service, reached through `pulsectl` (libpulse).

avcall never starts a sound server (no autospawn): where none answers, `connect()` returns None and the
caller says so in a line and goes on without what needs one (the virtual microphone, echo control).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from .errors import DeviceError


@dataclass(frozen=True)
class PulseDevice:
    name: str  # what `pactl` and `--mic` / `--far-end` name it by
    description: str  # what call apps show
    monitor_of: str | None = None  # a sink's monitor: the sink's name


def connect(client: str = "avcall", timeout_s: float = 2.0):
    """A pulsectl.Pulse connected to the running server, or None when none answers (or no libpulse)."""
    try:
        import pulsectl
    except (ImportError, OSError):  # OSError: the package is there, libpulse is not
        return None
    pulse = pulsectl.Pulse(client, connect=False)
    try:
        pulse.connect(autospawn=False, timeout=timeout_s)
    except pulsectl.PulseError:
        pulse.close()
        return None
    return pulse


@contextmanager
def session(client: str = "avcall") -> Iterator:
    """`connect()` as a context: the connection (or None) is closed at the end."""
    pulse = connect(client)
    try:
        yield pulse
    finally:
        if pulse is not None:
            pulse.close()


def sources(pulse) -> list[PulseDevice]:
    return [PulseDevice(s.name, s.description, s.monitor_of_sink_name or None) for s in pulse.source_list()]


def sinks(pulse) -> list[PulseDevice]:
    return [PulseDevice(s.name, s.description) for s in pulse.sink_list()]


def find(devices: list[PulseDevice], wanted: str) -> PulseDevice | None:
    """The device named `wanted`, by name first, then by description (what the desktop shows)."""
    for attr in ("name", "description"):
        for device in devices:
            if getattr(device, attr) == wanted:
                return device
    return None


def monitor_of(pulse, sink: str) -> str:
    """The source that monitors `sink` (what it plays)."""
    return pulse.get_sink_by_name(sink).monitor_source_name


def default_source(pulse) -> str:
    return pulse.server_info().default_source_name


def default_sink(pulse) -> str:
    return pulse.server_info().default_sink_name


def resolve_sink(pulse, wanted: str | None) -> PulseDevice:
    """The sink `wanted` names (None: the default one), or a DeviceError naming the sinks there are."""
    found = sinks(pulse)
    device = find(found, wanted if wanted is not None else default_sink(pulse))
    if device is None:
        names = ", ".join(d.name for d in found) or "none"
        raise DeviceError(f"no output device {wanted!r} on the sound server (there are: {names}); "
                          f"`pactl list short sinks` lists them")
    return device
