"""Loop source: a media file played again and again at real time, as one endless call (the soak's input).

Each pass is a fresh FileSource on the same session clock whose media time 0 falls where the previous pass
ended (or now, if reopening took longer), for audio and video alike: the two streams start every pass
together, so however many times the file loops they cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

from ..clock import SessionClock
from ..frames import Frame
from .base import Source, SourceEnded
from .file import FileSource, probe


class LoopSource(Source):
    def __init__(self, path: str | Path, *, clock: SessionClock, passes: int | None = None) -> None:
        """`passes`: how many times to play the file (None: until stopped)."""
        self.path = Path(path)
        self.info = probe(self.path)
        self.clock = clock
        self.passes = passes
        self.loops = 0  # passes completed
        self._pass: FileSource | None = None

    async def start(self) -> None:
        self._pass = await self._open(self.clock.now())

    async def _open(self, at: float) -> FileSource:
        source = FileSource(self.path, clock=self.clock, realtime=True, start_at=at)
        source.incidents = self.incidents
        await source.start()
        return source

    async def recv(self) -> Frame:
        while True:
            try:
                return await self._pass.recv()
            except SourceEnded:
                ended = self._pass.start_at + self._pass.decoded_until
                await self._pass.stop()
                self.loops += 1
                if self.passes is not None and self.loops >= self.passes:
                    raise
                self._pass = await self._open(max(ended, self.clock.now()))

    async def stop(self) -> None:
        if self._pass is not None:
            await self._pass.stop()
