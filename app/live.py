"""`avcall live` on the sound server: where the voice comes from and goes to, set up before the call and
taken down after it.

With a sound server (PulseAudio, or PipeWire's PulseAudio service) the run makes the avcall microphone
(pipelines/virtual_mic.py) and removes it at exit, on Ctrl-C, SIGTERM or SIGHUP alike (a run killed with
SIGKILL leaves it, and the next run removes it first); the microphone is read from the server, and the far
end, what the call app plays on the output device, is the echo control's reference. The microphone and the
far end are resolved before the avcall microphone exists: the server may make it its default source.
Without a server the voice plays on an output device, as a virtual cable needs (Windows, macOS).
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from avcall.pipelines import pulse, virtual_mic
from avcall.pipelines.errors import DeviceError


@dataclass
class LiveAudio:
    """The audio ends of a live run, as ProcessConfig takes them."""

    mic: int | str | None
    mic_from_server: bool = False
    voice_sink: str | None = None  # the avcall microphone's sink
    far_end: str | None = None  # the monitor the echo control listens to
    play: bool = False  # also play the voice on `speaker` (sounddevice)
    speaker: int | str | None = None
    notes: list[str] = field(default_factory=list)  # one line each, printed before the call starts


def plan_audio(server, *, mic: int | str, output: int | str | None, mic_out: bool, far_end: str | None,
               echo: str) -> LiveAudio:
    """Where the voice comes from and goes to (nothing is loaded yet). `server`: a pulsectl connection or None."""
    if server is None:
        where = f"output {output!r}" if output is not None else "the default output"
        return LiveAudio(mic=mic, play=True, speaker=output, notes=[
            f"avcall live: no sound server (PulseAudio or PipeWire) answers: no avcall microphone and no echo "
            f"control; the voice plays on {where} (a virtual cable: docs/call_apps.md)"])
    plan = LiveAudio(mic=mic, play=output is not None or not mic_out, speaker=output)
    own = (virtual_mic.SOURCE, f"{virtual_mic.SINK}.monitor")
    if isinstance(mic, str):
        wanted = pulse.default_source(server) if mic == "default" else mic
        found = pulse.find(pulse.sources(server), wanted)
        if found is not None and found.name in own:
            raise DeviceError(f"--mic {mic}: that is the avcall microphone itself; pick the real microphone "
                              f"(`avcall devices` lists them)")
        if found is not None:
            plan.mic, plan.mic_from_server = found.name, True
    if echo != "off" and far_end != "off":
        sink = pulse.resolve_sink(server, far_end)
        if sink.name == virtual_mic.SINK:
            raise DeviceError("--far-end: the avcall microphone's own sink plays no far end; name the output "
                              "the call app plays on (`pactl list short sinks`)")
        plan.far_end = pulse.monitor_of(server, sink.name)
        plan.notes.append(f"avcall live: echo control ({echo}) of what plays on {sink.description!r}")
    if mic_out:
        plan.voice_sink = virtual_mic.SINK
        plan.notes.append(f"avcall live: the clean voice is the microphone {virtual_mic.DESCRIPTION!r} "
                          f"({virtual_mic.SOURCE}): pick it in the call app")
    return plan


@contextmanager
def live_audio(*, mic: int | str, output: int | str | None, mic_out: bool, far_end: str | None,
               echo: str) -> Iterator[LiveAudio]:
    """The plan, with the avcall microphone made for the duration of the block and removed after it."""
    with pulse.session() as server:
        if server is not None:
            virtual_mic.remove_stale(server)  # before the defaults are read: a stale avcall source may be one
        plan = plan_audio(server, mic=mic, output=output, mic_out=mic_out, far_end=far_end, echo=echo)
        made = virtual_mic.create(server) if plan.voice_sink else None
    for line in plan.notes:
        print(line, file=sys.stderr)
    if made is None:
        yield plan
        return
    previous = {sig: signal.signal(sig, _exit_on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield plan
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with pulse.session() as server:  # a new connection: the first may have been idle for hours
            if server is not None:
                virtual_mic.remove(server, made)


def _exit_on_signal(signum, frame) -> None:
    """SIGTERM / SIGHUP end the run as Ctrl-C's second press does, through the `finally` that cleans up."""
    raise SystemExit(128 + signum)
