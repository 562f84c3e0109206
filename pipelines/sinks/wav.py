"""WAV sink: the audio frames as 16 kHz mono, 16-bit PCM by default (`subtype`: soundfile's names, "FLOAT"
for float32), gaps in pts filled with silence; written under a temporary name and renamed into place at the
end of the stream (see atomic.py). Samples beyond full scale are clipped by the PCM conversion: the stages
that can make them (the enhancer) limit their output first."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

from ..errors import OutputError
from ..frames import SAMPLE_RATE, AudioFrame, Frame
from ..stage import Stage
from .atomic import cannot_write, commit, discard, partial_path


class WavSink(Stage):
    accepts = (AudioFrame,)

    def __init__(self, path: str | Path, *, subtype: str = "PCM_16", name: str = "wav_out") -> None:
        super().__init__(name)
        self.path = Path(path)
        self.subtype = subtype
        self._partial = partial_path(self.path)
        self._file: soundfile.SoundFile | None = None
        self._written = 0
        self._origin: float | None = None

    async def start(self) -> None:
        try:
            self._file = soundfile.SoundFile(str(self._partial), "w", SAMPLE_RATE, 1, subtype=self.subtype)
        except (RuntimeError, OSError) as err:
            raise OutputError(f"cannot write {self.path}: {err}") from None

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if self._origin is None:
            self._origin = frame.pts
        gap = round((frame.pts - self._origin) * SAMPLE_RATE) - self._written
        samples = np.concatenate([np.zeros(gap, np.float32), frame.samples]) if gap > 0 else frame.samples
        await self.in_worker(self._write, samples)
        self._written += len(samples)
        return [frame]

    def _write(self, samples: np.ndarray) -> None:
        try:
            self._file.write(samples)
        except OSError as err:
            raise cannot_write(self.path, err) from None
        except RuntimeError as err:  # libsndfile's own errors (a full disk among them)
            raise OutputError(f"cannot write {self.path}: {err}") from None

    async def flush(self) -> Sequence[Frame]:
        await self.in_worker(self._finish)
        return ()

    def _finish(self) -> None:
        file, self._file = self._file, None
        try:
            file.close()
        except (OSError, RuntimeError) as err:
            discard(self._partial)
            raise OutputError(f"cannot write {self.path}: {getattr(err, 'strerror', None) or err}") from None
        commit(self._partial, self.path)

    async def stop(self) -> None:
        if self._file is not None:  # the stream did not end: what was written is not kept
            file, self._file = self._file, None
            await self.in_worker(_close_quietly, file)
            discard(self._partial)


def _close_quietly(file: soundfile.SoundFile) -> None:
    try:
        file.close()
    except (OSError, RuntimeError):
        pass
