"""One model step for many streams: the served peers' hops, stacked into one batch.

Each stream keeps its own recurrent state and calls `run` from its own thread (a stage's worker) with a batch
of one, as it would call onnxruntime. Calls that arrive together are stacked along each tensor's batch axis,
run as one call, and each stream gets its own rows back: the same answers as one run per stream
(tests/pipelines/test_batch.py), one model call per hop for all of them. A lone stream is run at once; with
several, the first waits at most `max_wait_s` for the others' hops of the same moment."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

ACTIVE_S = 0.5  # a stream (a caller thread) counts as running if it called within this long


@dataclass
class _Call:
    feeds: dict
    deadline: float
    result: list | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class BatchStats:
    calls: int = 0  # model calls made
    rows: int = 0  # stream steps they carried
    largest: int = 0
    streams: dict = field(default_factory=dict)  # caller thread -> when it last called


class BatchedSession:
    """An onnxruntime session (or anything with its `run`/`get_inputs`/`get_modelmeta`) whose `run` batches
    concurrent callers. `batch_axes`: each input's and output's batch axis by name (a recurrent state's is
    usually 1); inputs not named are taken from the first caller (they must be the same for all)."""

    def __init__(self, session, batch_axes: dict[str, int], max_wait_s: float = 0.002) -> None:
        self.session, self.axes, self.max_wait_s = session, dict(batch_axes), max_wait_s
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
        self._running = False

    def get_inputs(self):
        return self.session.get_inputs()

    def get_outputs(self):
        return self.session.get_outputs()

    def get_modelmeta(self):
        return self.session.get_modelmeta()

    def run(self, output_names, feeds: dict) -> list:
        now = time.monotonic()
        call = _Call(feeds, now + self.max_wait_s)
        with self._cond:
            self.stats.streams[threading.get_ident()] = now
            self._queue.append(call)
            while not call.done:
                if not self._running and self._ready(time.monotonic()):
                    self._run_queue(output_names)
                else:
                    wait = self._queue[0].deadline - time.monotonic() if self._queue and not self._running else None
                    self._cond.wait(timeout=max(wait, 1e-4) if wait is not None else 0.05)
        if call.error is not None:
            raise call.error
        return call.result

    def _ready(self, now: float) -> bool:
        """Run what is queued: every running stream has its hop in, or the oldest has waited long enough."""
        if not self._queue:
            return False
        streams = self.stats.streams
        for thread, seen in list(streams.items()):
            if now - seen > ACTIVE_S:
                del streams[thread]
        return len(self._queue) >= len(streams) or now >= self._queue[0].deadline

    def _run_queue(self, output_names) -> None:
        """Called with the lock held; runs the batch without it, so other streams can queue meanwhile."""
        batch, self._queue, self._running = self._queue, [], True
        self._cond.release()
        try:
            try:
                outputs = self._run_batch(output_names, batch)
                for i, call in enumerate(batch):
                    call.result = [np.take(out, [i], axis=self._axis(name)) for name, out in
                                   zip(self._names(output_names), outputs)]
            except Exception as err:  # noqa: BLE001 - every caller of the batch gets the error
                for call in batch:
                    call.error = err
        finally:
            self._cond.acquire()
            for call in batch:
                call.done = True
            self._running = False
            self.stats.calls += 1
            self.stats.rows += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            self._cond.notify_all()

    def _run_batch(self, output_names, batch: list[_Call]) -> list:
        if len(batch) == 1:
            return self.session.run(output_names, batch[0].feeds)
        feeds = {name: np.concatenate([c.feeds[name] for c in batch], axis=self.axes[name]) if name in self.axes
                 else value for name, value in batch[0].feeds.items()}
        return self.session.run(output_names, feeds)

    def _names(self, output_names) -> list[str]:
        return list(output_names) if output_names else [o.name for o in self.session.get_outputs()]

    def _axis(self, name: str) -> int:
        return self.axes.get(name, 0)
