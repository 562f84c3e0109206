"""Sound-server capture: a PulseAudio source (a microphone, a null sink's monitor, a pipe source) read in
10 ms hops of 16 kHz mono float32 through libpulse-simple (`pasimple`), the server doing the resampling.

`PulseRecorder` is the reading thread, `PulseSource` the microphone built on it (the gap and stall reporting
of MicrophoneSource as is); the echo control reads the far end's monitor with a recorder of its own.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

import numpy as np

from ..audio import HopChunker
from ..clock import SessionClock
from ..errors import DeviceError
from ..frames import HOP_SAMPLES, SAMPLE_RATE
from .microphone import MicrophoneSource

HOP_BYTES = 4 * HOP_SAMPLES  # float32


class PulseRecorder:
    """Reads `device` on its own thread and hands each hop to `on_hop(samples)` as it comes."""

    def __init__(self, device: str | None, on_hop: Callable[[np.ndarray], None], *, name: str = "avcall") -> None:
        self.device = device
        self.on_hop = on_hop
        self.name = name
        self._stream = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()

    def open(self) -> None:
        try:
            import pasimple
        except (ImportError, OSError) as err:
            raise DeviceError(f"no sound-server capture: {err} (pip install pasimple; Debian: libpulse0)") from None
        try:  # 10 ms fragments: the server sends each hop as it is complete, not in ~2 s chunks
            self._stream = pasimple.PaSimple(pasimple.PA_STREAM_RECORD, pasimple.PA_SAMPLE_FLOAT32LE, 1, SAMPLE_RATE,
                                             app_name="avcall", stream_name=self.name, device_name=self.device,
                                             fragsize=HOP_BYTES)
        except pasimple.PaSimpleError:
            raise DeviceError(f"cannot record {self.device or 'the default source'!r} from the sound server; "
                              f"`pactl list short sources` lists them") from None
        self._running.set()
        self._thread = threading.Thread(target=self._read_loop, name=f"avcall-{self.name}", daemon=True)
        self._thread.start()

    def _read_loop(self) -> None:
        while self._running.is_set():
            try:
                data = self._stream.read(HOP_BYTES)
            except Exception:  # noqa: BLE001 - the server went away: the reader ends, the stall is reported
                return
            self.on_hop(np.frombuffer(data, np.float32).copy())

    def close(self) -> None:
        """Stop reading (the blocked read returns within a hop) and free the stream; safe to call twice."""
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            if self._thread.is_alive():  # a source that delivers nothing (a pipe nobody writes): its read
                return  # never returns, and freeing the stream under it aborts libpulse; left to the exit
            self._thread = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class PulseSource(MicrophoneSource):
    """A microphone read from the sound server by source name (None: the server's default source)."""

    def __init__(self, device: str | None = None, *, clock: SessionClock | None = None, stall_s: float = 1.0) -> None:
        super().__init__(device, clock=clock, stall_s=stall_s)
        # the server keeps every sample until it is read (seconds of them): a hop stamped late was read late,
        # not lost, so the sample count keeps the time unless a stamp is a whole second off
        self._chunker = HopChunker(resync_s=1.0)
        self._recorder: PulseRecorder | None = None

    async def start(self) -> None:
        self.open_blocks(SAMPLE_RATE)
        self._recorder = PulseRecorder(self.device, self._on_hop, name="microphone")
        await self._in_thread(self._recorder.open)

    def _on_hop(self, samples: np.ndarray) -> None:
        self._on_block(samples[:, None], len(samples), None, None)

    async def _in_thread(self, fn) -> None:
        await asyncio.get_running_loop().run_in_executor(None, fn)

    async def stop(self) -> None:
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            await self._in_thread(recorder.close)
        await super().stop()
