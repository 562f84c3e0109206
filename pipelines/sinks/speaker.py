"""Speaker sink: plays the audio frames on an output device through sounddevice."""

from __future__ import annotations

from typing import Sequence

from ..errors import DeviceError
from ..frames import SAMPLE_RATE, AudioFrame, Frame
from ..sources.microphone import import_sounddevice
from ..stage import Stage


class SpeakerSink(Stage):
    accepts = (AudioFrame,)

    def __init__(self, device: int | str | None = None) -> None:
        super().__init__("speaker_out")
        self.device = device
        self._stream = None

    async def start(self) -> None:
        sd = import_sounddevice()
        try:
            sd.query_devices(self.device, kind="output")
            self._stream = sd.OutputStream(device=self.device, samplerate=SAMPLE_RATE, channels=1,
                                           dtype="float32")
            self._stream.start()
        except (ValueError, sd.PortAudioError):
            wanted = "default speaker" if self.device is None else f"speaker {self.device!r}"
            raise DeviceError(f"no {wanted} found; `avcall devices` lists the outputs, "
                              f"pick one with --speaker NAME_OR_INDEX") from None

    async def process(self, frame: Frame) -> Sequence[Frame]:
        await self.in_worker(self._stream.write, frame.samples.reshape(-1, 1))
        return [frame]

    async def stop(self) -> None:
        if self._stream is not None:
            await self.in_worker(self._stream.close)
            self._stream = None
