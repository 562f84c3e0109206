"""The stage base class: one async method that consumes one frame and returns the frames to pass on."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, ClassVar, Sequence, TypeVar

from .frames import Event, Frame
from .telemetry import NO_INCIDENTS, Incidents, StageTelemetry

T = TypeVar("T")


class Stage:
    """Subclasses set `accepts` and implement `process`.

    Frames of other types bypass the stage (the runner routes them on), so a stage never forwards what it
    does not handle. A stage returns, from `process`, every frame that should continue downstream,
    including the input if it is still wanted there. Blocking work (inference, encoding, file writes) goes
    through `in_worker`, on the stage's own thread, so the event loop stays free and thread-affine
    libraries (mediapipe graphs, encoders) always see the same thread.
    """

    accepts: ClassVar[tuple[type[Frame], ...]] = ()
    # True for a stage the call can go on without (a model, an overlay, a tap): a frame it throws on, or, in
    # a live run, a frame that waited more than `late_s` in its queue (audio, lips, events: the frames that
    # are never dropped), is passed on unprocessed and reported in the run's incidents. Sinks keep False:
    # for them passing a frame on is losing it, and a write that fails must end the run with its error.
    passthrough: ClassVar[bool] = False
    late_s: ClassVar[float] = 0.2

    def __init__(self, name: str | None = None) -> None:
        self.name = name or type(self).__name__
        self.telemetry = StageTelemetry(self.name)
        self.incidents: Incidents = NO_INCIDENTS  # the pipeline gives every stage its run's Incidents
        self.shedder = None  # a live call's load.LoadShedder: work to skip under load
        self._state: dict = {}  # what the stage has reported of itself since its last frame (see report)
        self._worker: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Open what the stage needs (models, files). Errors here stop the pipeline before it runs."""

    async def process(self, frame: Frame) -> Sequence[Frame]:
        raise NotImplementedError

    def on_control(self, values: dict) -> None:
        """A user's switch (see frames.Control): take the names this stage knows, ignore the rest. Runs on
        the event loop between two frames of this stage, so it never races `process`."""

    def report(self, **values) -> None:
        """Say how the stage stands (a meter's level, a face seen or lost, the mode a user switched to). The
        runner sends it on after the stage's current frame as an Event of kind "state": whoever shows the
        call's telemetry reads those events, like captions, and never reaches into a stage."""
        self._state.update(values)

    def take_state(self, pts: float) -> Event | None:
        """The state reported since the last call, as one Event at `pts` (None when nothing was)."""
        if not self._state:
            return None
        event, self._state = Event(pts=pts, kind="state", data=self._state), {}
        return event

    async def flush(self) -> Sequence[Frame]:
        """End of stream: return what is still held back."""
        return ()

    async def stop(self) -> None:
        """Release everything; called once on success, error and cancellation alike."""

    def shed(self, work: str) -> bool:
        """Whether to skip this unit of optional `work` ("overlay", ...) because the call is under load."""
        return self.shedder is not None and self.shedder.skip(work)

    async def in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"avcall-{self.name}")
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def shutdown_worker(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
