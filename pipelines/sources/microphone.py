"""Microphone source: sounddevice at the device's native rate, resampled once to 16 kHz mono.

PortAudio calls `_on_block` on its own thread; the block is stamped with the session clock (time of its
first sample) and handed to the event loop. `recv()` resamples and cuts 10 ms hops whose pts follow the
sample count, re-anchored to the capture stamps when the device skips.

Gaps and stalls are part of a long call, not its end: samples the device skipped are counted (`mic_gap_s`,
and a `mic_gap` event; the hops after the gap keep their true time, so nothing drifts), and a microphone
that delivers nothing for `stall_s` is reported while it happens (`mic_stalled`, then `mic_back`); the rest
of the call (the video) never waits for it.
"""

from __future__ import annotations

import asyncio

import numpy as np

from ..audio import HopChunker, mono_16k_resampler, resample_block
from ..clock import SessionClock
from ..errors import DeviceError
from ..frames import AudioFrame
from .base import Source, SourceEnded


def import_sounddevice():
    try:
        import sounddevice
    except OSError:  # the Python package is there, the PortAudio library is not
        raise DeviceError("no audio devices: the PortAudio library is missing "
                          "(Debian/Ubuntu: apt-get install libportaudio2)") from None
    return sounddevice


def find_input_device(sd, device: int | str | None) -> dict:
    """The sounddevice description of the microphone to use, or a DeviceError naming what was tried."""
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError):
        wanted = "the default microphone" if device is None else f"microphone {device!r}"
        raise DeviceError(f"no {wanted} found; `avcall devices` lists the microphones found, "
                          f"pick one with --mic NAME_OR_INDEX") from None
    if info["max_input_channels"] < 1:
        raise DeviceError(f"{info['name']!r} has no input channels; pick a microphone with --mic")
    return info


class MicrophoneSource(Source):
    def __init__(self, device: int | str | None = None, *, clock: SessionClock | None = None,
                 block_ms: float = 10.0, stall_s: float = 1.0) -> None:
        self.device = device
        self.clock = clock or SessionClock()
        self.block_ms = block_ms
        self.stall_s = stall_s
        self._last_block = 0.0  # session time the latest block was taken
        self._stalled_at: float | None = None
        self._watch: asyncio.TimerHandle | None = None
        self.rate = 0
        self._stream = None
        self._blocks: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resampler = mono_16k_resampler()
        self._chunker = HopChunker()
        self._pending: list[AudioFrame] = []

    async def start(self) -> None:
        sd = import_sounddevice()
        info = find_input_device(sd, self.device)
        self.open_blocks(int(info["default_samplerate"]))
        channels = min(2, int(info["max_input_channels"]))
        try:
            self._stream = sd.InputStream(device=self.device, samplerate=self.rate, channels=channels,
                                          dtype="float32", blocksize=int(self.rate * self.block_ms / 1000),
                                          callback=self._on_block)
            self._stream.start()
        except sd.PortAudioError as err:
            raise DeviceError(f"cannot open microphone {info['name']!r}: {err}") from None

    def open_blocks(self, rate: int) -> None:
        """Prepare to receive blocks at `rate` Hz (start() does this for a real device)."""
        self.rate = rate
        self._loop = asyncio.get_running_loop()
        self._blocks = asyncio.Queue()
        self._last_block = self.clock.now()
        self._watch = self._loop.call_later(self.stall_s / 2, self._check_stall)

    def _check_stall(self) -> None:
        """A timer, not a timeout on the read: a stall is said while it lasts, and recv stays plain."""
        if self._stalled_at is None and self.clock.now() - self._last_block > self.stall_s:
            self._stalled_at = self._last_block
            self.incidents.note("mic_stalled", self._stalled_at)
        self._watch = self._loop.call_later(self.stall_s / 2, self._check_stall)

    def _on_block(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        pts = self.clock.now() - frames / self.rate  # the block's first sample
        self._loop.call_soon_threadsafe(self._blocks.put_nowait, (pts, indata.copy()))

    async def recv(self) -> AudioFrame:
        while not self._pending:
            item = await self._blocks.get()
            if item is None:
                raise SourceEnded
            pts, block = item
            self._last_block = self.clock.now()
            if self._stalled_at is not None:
                self.incidents.note("mic_back", pts, after_s=round(pts - self._stalled_at, 3))
                self._stalled_at = None
            if block.ndim == 1:
                block = block[:, None]
            expected = self._chunker.expected_pts()
            self._pending = self._chunker.push(resample_block(self._resampler, block, self.rate), pts)
            if expected is not None and pts - expected > self._chunker.resync_s:  # the device skipped samples
                self.incidents.count("mic_gap_s", pts - expected)
                self.incidents.note("mic_gap", expected, gap_s=round(pts - expected, 3))
        return self._pending.pop(0)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
        if self._blocks is not None:
            self._blocks.put_nowait(None)
