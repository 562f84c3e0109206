"""The queue in front of each stage.

Live sessions: frames marked `droppable` (video) are latest-frame-wins: when `max_droppable` frames of the
same type wait, the oldest is discarded and counted, and the ones kept move up into the places in line of
those before them (the newest into the last). Moving up, not joining the back, matters when the queue also
holds audio: a frame at the back of a backlog longer than a few video frames would always be replaced
before reaching the stage, and the video would stop.
Audio, lip features and events are never dropped and never block the producer (the stage must keep up or
pass audio through; see architecture.md).
Offline runs (files): nothing is dropped; a full queue makes the producer wait (backpressure).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable

from .frames import Frame


class FrameQueue:
    def __init__(self, *, live: bool, max_droppable: int = 2, max_offline: int = 64,
                 on_drop: Callable[[Frame], None] | None = None) -> None:
        self.live = live
        self.max_droppable = max_droppable
        self.max_offline = max_offline
        self.on_drop = on_drop
        self._items: deque[tuple[float, Frame]] = deque()  # (monotonic time of entry, frame)
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, frame: Frame) -> None:
        async with self._changed:
            if self.live:
                if not (frame.droppable and self._replace_oldest_of_its_kind(frame)):
                    self._items.append((time.monotonic(), frame))
            else:
                await self._changed.wait_for(lambda: len(self._items) < self.max_offline)
                self._items.append((time.monotonic(), frame))
            self._changed.notify_all()

    async def put_front(self, frame: Frame) -> None:
        """A control frame: ahead of everything waiting (never dropped, never waits for room)."""
        async with self._changed:
            self._items.appendleft((time.monotonic(), frame))
            self._changed.notify_all()

    async def get(self) -> tuple[float, Frame]:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            entered, frame = self._items.popleft()
            self._changed.notify_all()
            return entered, frame

    def _replace_oldest_of_its_kind(self, frame: Frame) -> bool:
        places = [i for i, (_, old) in enumerate(self._items) if type(old) is type(frame)]
        if len(places) < self.max_droppable:
            return False
        kept = [self._items[i] for i in places[1:]] + [(time.monotonic(), frame)]  # oldest first, as in line
        dropped = self._items[places[0]][1]
        for i, item in zip(places, kept):
            self._items[i] = item
        if self.on_drop:
            self.on_drop(dropped)
        return True
