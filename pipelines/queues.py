"""The queue in front of each stage.

Live sessions: frames marked `droppable` (video) are latest-frame-wins: when `max_droppable` of them wait,
the oldest is discarded and counted; audio, lip features and events are never dropped and never block
the producer (the stage must keep up or pass audio through; see architecture.md).
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
        self._droppable = 0
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, frame: Frame) -> None:
        async with self._changed:
            if self.live:
                if frame.droppable and self._droppable >= self.max_droppable:
                    self._drop_oldest_droppable()
            else:
                await self._changed.wait_for(lambda: len(self._items) < self.max_offline)
            self._items.append((time.monotonic(), frame))
            self._droppable += frame.droppable
            self._changed.notify_all()

    async def get(self) -> tuple[float, Frame]:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            entered, frame = self._items.popleft()
            self._droppable -= frame.droppable
            self._changed.notify_all()
            return entered, frame

    def _drop_oldest_droppable(self) -> None:
        for i, (_, old) in enumerate(self._items):
            if old.droppable:
                del self._items[i]
                self._droppable -= 1
                if self.on_drop:
                    self.on_drop(old)
                return
