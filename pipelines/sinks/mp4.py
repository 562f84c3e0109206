"""MP4 sink: H.264 video and AAC audio, each placed at its frame's pts so A/V sync survives dropped frames.

The file is written under a temporary name and renamed into place at the end of the stream (see atomic.py):
a run that fails or is killed never leaves an mp4 that looks whole."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

from ..errors import OutputError
from ..frames import SAMPLE_RATE, AudioFrame, Frame, VideoFrame
from ..stage import Stage
from .atomic import cannot_write, commit, discard, partial_path


class Mp4Sink(Stage):
    accepts = (VideoFrame, AudioFrame)

    def __init__(self, path: str | Path, *, video_size: tuple[int, int] | None, fps: Fraction | float = 25,
                 audio: bool = True, name: str = "mp4_out") -> None:
        super().__init__(name)
        self.path = Path(path)
        self._partial = partial_path(self.path)
        self.video_size = video_size  # None: audio only
        self.fps = Fraction(fps).limit_denominator(1001)
        self.audio = audio
        self._container = None
        self._video = self._audio = None
        self._last_video_pts = -1
        self._next_audio_pts = 0

    async def start(self) -> None:
        await self.in_worker(self._open)

    def _open(self) -> None:
        try:
            self._container = av.open(str(self._partial), mode="w")
        except OSError as err:
            raise cannot_write(self.path, err) from None
        except av.FFmpegError as err:
            raise OutputError(f"cannot write {self.path}: {err}") from None
        if self.video_size is not None:
            w, h = (d - d % 2 for d in self.video_size)  # yuv420p needs even sides
            self._video = self._container.add_stream("libx264", rate=self.fps)
            self._video.width, self._video.height, self._video.pix_fmt = w, h, "yuv420p"
            self._video.options = {"preset": "veryfast", "crf": "23"}
        if self.audio:
            self._audio = self._container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")

    async def process(self, frame: Frame) -> Sequence[Frame]:
        await self.in_worker(self._write, frame)
        return [frame]

    def _write(self, frame: Frame) -> None:
        if isinstance(frame, VideoFrame) and self._video is not None:
            pts = round(frame.pts * self.fps)
            if pts <= self._last_video_pts:  # two frames in one slot of the output rate: keep the first
                return
            self._last_video_pts = pts
            image = frame.image[: self._video.height, : self._video.width]
            out = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            out.pts, out.time_base = pts, 1 / self.fps
            self._mux(self._video.encode(out))
        elif isinstance(frame, AudioFrame) and self._audio is not None:
            pts = max(round(frame.pts * SAMPLE_RATE), self._next_audio_pts)
            out = av.AudioFrame.from_ndarray(frame.samples.reshape(1, -1), format="flt", layout="mono")
            out.sample_rate, out.pts, out.time_base = SAMPLE_RATE, pts, Fraction(1, SAMPLE_RATE)
            self._next_audio_pts = pts + len(frame.samples)
            self._mux(self._audio.encode(out))

    def _mux(self, packets) -> None:
        try:
            self._container.mux(packets)
        except OSError as err:
            raise cannot_write(self.path, err) from None

    async def flush(self) -> Sequence[Frame]:
        await self.in_worker(self._finish)
        return ()

    def _finish(self) -> None:
        """The end of the stream: the encoders drained, the file closed and renamed into place."""
        for stream in (self._video, self._audio):
            if stream is not None:
                self._mux(stream.encode(None))
        container, self._container = self._container, None
        try:
            container.close()
        except OSError as err:
            discard(self._partial)
            raise cannot_write(self.path, err) from None
        commit(self._partial, self.path)

    async def stop(self) -> None:
        if self._container is not None:  # the stream did not end: what was written is not kept
            await self.in_worker(self._abandon)

    def _abandon(self) -> None:
        container, self._container = self._container, None
        try:
            container.close()
        except (OSError, av.FFmpegError):
            pass
        discard(self._partial)
