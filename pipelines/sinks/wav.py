"""WAV sink: the audio frames as 16 kHz mono float32, gaps in pts filled with silence."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

from ..errors import OutputError
from ..frames import SAMPLE_RATE, AudioFrame, Frame
from ..stage import Stage


class WavSink(Stage):
    accepts = (AudioFrame,)

    def __init__(self, path: str | Path, *, name: str = "wav_out") -> None:
        super().__init__(name)
        self.path = Path(path)
        self._file: soundfile.SoundFile | None = None
        self._written = 0
        self._origin: float | None = None

    async def start(self) -> None:
        try:
            self._file = soundfile.SoundFile(str(self.path), "w", SAMPLE_RATE, 1, subtype="FLOAT")
        except (RuntimeError, OSError) as err:
            raise OutputError(f"cannot write {self.path}: {err}") from None

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if self._origin is None:
            self._origin = frame.pts
        gap = round((frame.pts - self._origin) * SAMPLE_RATE) - self._written
        samples = np.concatenate([np.zeros(gap, np.float32), frame.samples]) if gap > 0 else frame.samples
        await self.in_worker(self._file.write, samples)
        self._written += len(samples)
        return [frame]

    async def stop(self) -> None:
        if self._file is not None:
            await self.in_worker(self._file.close)
            self._file = None
