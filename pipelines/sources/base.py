"""The source interface, after aiortc's MediaStreamTrack: `recv()` returns the next frame."""

from __future__ import annotations

from ..frames import Frame
from ..telemetry import NO_INCIDENTS, Incidents


class SourceEnded(Exception):
    """Raised by `recv()` when the source has no more frames."""


class Source:
    incidents: Incidents = NO_INCIDENTS  # the pipeline gives every source its run's Incidents (camera lost, ...)

    async def start(self) -> None:
        """Open the device or file; raise a DeviceError / InputError a user can act on."""

    async def recv(self) -> Frame:
        raise NotImplementedError

    async def stop(self) -> None:
        """Release the device or file; safe to call more than once."""
