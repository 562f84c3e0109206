"""Sound-server playback: the voice played into a PulseAudio sink by name (avcall's own null sink, whose
monitor is the avcall microphone), 16 kHz mono float32 through libpulse-simple (`pasimple`)."""

from __future__ import annotations

from typing import Sequence

from ..errors import DeviceError
from ..frames import HOP_SAMPLES, SAMPLE_RATE, AudioFrame, Frame
from ..stage import Stage

HOP_BYTES = 4 * HOP_SAMPLES


class PulseSink(Stage):
    accepts = (AudioFrame,)

    def __init__(self, sink: str, *, buffer_hops: int = 4) -> None:
        super().__init__("virtual_mic_out")
        self.sink = sink
        self.buffer_hops = buffer_hops  # what the server keeps queued: the delay this sink adds, 40 ms
        self._stream = None

    async def start(self) -> None:
        self._stream = await self.in_worker(self._open)

    def _open(self):
        try:
            import pasimple
        except (ImportError, OSError) as err:
            raise DeviceError(f"no sound-server playback: {err} (pip install pasimple; Debian: libpulse0)") from None
        size = self.buffer_hops * HOP_BYTES
        try:
            return pasimple.PaSimple(pasimple.PA_STREAM_PLAYBACK, pasimple.PA_SAMPLE_FLOAT32LE, 1, SAMPLE_RATE,
                                     app_name="avcall", stream_name="clean voice", device_name=self.sink,
                                     tlength=size, prebuf=HOP_BYTES, minreq=HOP_BYTES)
        except pasimple.PaSimpleError:
            raise DeviceError(f"cannot play into {self.sink!r} on the sound server") from None

    async def process(self, frame: Frame) -> Sequence[Frame]:
        await self.in_worker(self._stream.write, frame.samples.astype("<f4").tobytes())
        return [frame]

    async def stop(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await self.in_worker(stream.close)
