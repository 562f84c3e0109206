"""The pipeline runner: sources feed a plain list of stages; each stage has its own queue and task.

A frame leaving stage i goes to the next stage that accepts its type; stages that do not accept it are
bypassed, so a slow face tracker never holds audio back. EndOfStream visits every stage in order after the
sources end, so each stage flushes what it holds before the next one is told. On success, error and
cancellation (Ctrl-C) alike, every task is awaited, every worker thread joined and every stage stopped.

Faults: a `passthrough` stage that throws passes the frame on unprocessed and the run goes on; in a live
run, a frame that is never dropped (audio, lips, events) and waited more than the stage's `late_s` goes on
unprocessed too, so a slow model never holds the voice back. Both are counted in `incidents`, with the
sources' own (camera lost, microphone gaps) and the video frames dropped.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Callable, Sequence

from .errors import AvcallError
from .frames import AudioFrame, Control, EndOfStream, Frame
from .queues import FrameQueue
from .sources.base import Source, SourceEnded
from .stage import Stage
from .telemetry import Incidents


class Pipeline:
    def __init__(self, sources: Sequence[Source], stages: Sequence[Stage], *, live: bool,
                 on_output: Callable[[Frame], None] | None = None) -> None:
        self.sources = list(sources)
        self.stages = list(stages)
        self.live = live
        self.on_output = on_output  # frames that leave the last stage
        self.interrupted = False
        self.incidents = Incidents()
        for part in (*self.sources, *self.stages):
            part.incidents = self.incidents
        self.last_input: float | None = None  # time.monotonic() of the latest frame from any source
        self._queues: list[FrameQueue] = []
        self._pumps: list[asyncio.Task] = []

    def describe(self) -> list[str]:
        return [type(s).__name__ for s in self.sources] + [s.name for s in self.stages]

    def telemetry(self) -> dict:
        return {s.name: s.telemetry.summary() for s in self.stages}

    def report(self) -> dict:
        """Per-stage telemetry and the run's incidents."""
        return {"stages": self.telemetry(), "incidents": self.incidents.summary()}

    async def run(self) -> dict:
        """Run until the sources end and every stage has flushed; returns the telemetry summary."""
        self._queues = [FrameQueue(live=self.live, on_drop=self._drop_counter(s)) for s in self.stages]
        tasks: list[asyncio.Task] = []
        try:
            for stage in self.stages:
                await stage.start()
            for source in self.sources:
                await source.start()
            if self.live:
                _freeze_what_started()
            stage_tasks = [asyncio.create_task(self._run_stage(i), name=f"stage-{s.name}")
                           for i, s in enumerate(self.stages)]
            feed = asyncio.create_task(self._feed(), name="sources")
            tasks = [feed, *stage_tasks]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()
        except asyncio.CancelledError:
            self.interrupted = True
            raise
        finally:
            await _to_the_end(self._shutdown(tasks))
        return self.telemetry()

    async def control(self, values: dict) -> None:
        """A user's switch for the call's stages (frames.Control): ahead of the media, stage by stage. Before
        the run has started (or after it ended) the stages take it at once."""
        frame = Control(pts=0.0, values=dict(values))
        if self._queues and self.stages:
            await self._queues[0].put_front(frame)
        else:
            for stage in self.stages:
                stage.on_control(frame.values)

    def end_input(self) -> None:
        """Stop reading the sources; what was read is processed and flushed as at a normal end."""
        self.interrupted = True
        for pump in self._pumps:
            pump.cancel()

    async def _feed(self) -> None:
        self._pumps = [asyncio.create_task(self._pump(s), name=f"source-{type(s).__name__}")
                       for s in self.sources]
        results = await asyncio.gather(*self._pumps, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result
        await self._route_control(EndOfStream(), 0)

    async def _pump(self, source: Source) -> None:
        while True:
            try:
                frame = await source.recv()
            except SourceEnded:
                return
            self.last_input = time.monotonic()
            await self._route(frame, 0)

    async def _run_stage(self, i: int) -> None:
        stage, queue, tel = self.stages[i], self._queues[i], self.stages[i].telemetry
        while True:
            entered, frame = await queue.get()
            if isinstance(frame, EndOfStream):
                try:
                    outs = await stage.flush()
                except Exception as err:  # noqa: BLE001 - re-raised unless the stage may be passed by
                    self._fail(stage, None, err)
                    outs = ()
                for out in outs:
                    await self._route(out, i + 1)
                await self._route_control(frame, i + 1)
                return
            if isinstance(frame, Control):
                stage.on_control(frame.values)
                if i + 1 < len(self.stages):
                    await self._queues[i + 1].put_front(frame)
                state = stage.take_state(frame.pts)
                if state is not None:
                    await self._route(state, i + 1)
                continue
            began = time.monotonic()
            if stage.passthrough and self.live and not frame.droppable and began - entered > stage.late_s:
                self._pass_by(stage, frame, "late_passthrough")
                await self._route(frame, i + 1)
                continue
            tel.frames_in += 1
            try:
                outs = await stage.process(frame)
            except Exception as err:  # noqa: BLE001 - re-raised unless the stage may be passed by
                self._fail(stage, frame, err)
                outs = [frame]
            finished = time.monotonic()
            tel.record(finished - entered, finished - began)
            tel.frames_out += len(outs)
            state = stage.take_state(frame.pts)
            for out in (*outs, state) if state is not None else outs:
                await self._route(out, i + 1)

    def _fail(self, stage: Stage, frame: Frame | None, err: Exception) -> None:
        """A stage threw: a user-facing error (a write that failed) or a stage the call cannot go without
        ends the run; otherwise the frame goes on unprocessed, and the first failure is reported."""
        if isinstance(err, AvcallError) or not stage.passthrough:
            raise err
        self.incidents.failed(stage.name, err, None if frame is None else frame.pts)
        if frame is not None:
            stage.telemetry.passed_through += 1
            self._count_audio(frame)

    def _pass_by(self, stage: Stage, frame: Frame, why: str) -> None:
        stage.telemetry.passed_through += 1
        self.incidents.count(f"{why}:{stage.name}")
        self._count_audio(frame)

    def _count_audio(self, frame: Frame) -> None:
        if isinstance(frame, AudioFrame):
            self.incidents.count("audio_passthrough_samples", len(frame.samples))

    async def _route(self, frame: Frame, start: int) -> None:
        for j in range(start, len(self.stages)):
            if isinstance(frame, self.stages[j].accepts):
                await self._queues[j].put(frame)
                return
        if self.on_output is not None:
            self.on_output(frame)

    async def _route_control(self, frame: Frame, start: int) -> None:
        if start < len(self.stages):
            await self._queues[start].put(frame)

    async def _shutdown(self, tasks: list[asyncio.Task]) -> None:
        for task in [*self._pumps, *tasks]:
            task.cancel()
        await asyncio.gather(*self._pumps, *tasks, return_exceptions=True)
        for source in self.sources:
            await _quietly(source.stop())
        for stage in self.stages:
            await _quietly(stage.stop())
            stage.shutdown_worker()

    def _drop_counter(self, stage: Stage) -> Callable[[Frame], None]:
        def count(_: Frame) -> None:
            stage.telemetry.dropped += 1
            self.incidents.count("frames_dropped")
        return count


_frozen = False


def _freeze_what_started() -> None:
    """Once per process, when the first live call has loaded its models: what exists then is moved out of the
    garbage collector's reach. A full collection walks every object (the libraries' and models' hundreds of
    thousands): 0.1-0.4 s with the loop held, a stall on a busy machine; frozen, they are never walked again."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


async def _to_the_end(coro) -> None:
    """Awaits `coro` to its end even if the caller is cancelled meanwhile, then re-raises the cancellation.
    A run that is ending by itself can be cancelled in the middle of its shutdown (a served peer whose
    tracks ended and whose connection closed at once): its stages' threads must still be joined."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()


async def _quietly(coro) -> None:
    """Shutdown must reach every source and stage even if one of them fails to close."""
    try:
        await coro
    except Exception:  # noqa: BLE001 - the error that stopped the run is the one to report
        pass
