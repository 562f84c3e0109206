"""File source: any container PyAV opens (mp4, mpg, mkv, webm, wav, flac, m4a, ...).

Video comes out as BGR frames and audio as 16 kHz mono 10 ms hops, both with the container's own
timestamps, shifted by the container's start time so that 0 is the start of the file and the A/V offset
recorded in the file is kept. Decoding runs on the source's own thread. With `realtime=True` frames are
released in pts order, each at its pts on the session clock, as a camera and microphone would deliver them.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from ..audio import HopChunker, frames_to_mono, mono_16k_resampler
from ..clock import SessionClock
from ..errors import InputError
from ..frames import Frame, VideoFrame
from .base import Source, SourceEnded

MIN_SIDE = 32  # smaller than this, no face can be found in it
MAX_SIDE = 4096  # 4K (DCI) on the long side: larger frames cost seconds each to track
READ_AHEAD_S = 0.25  # realtime: how far decoding runs ahead of the frames released
TRUNCATED_SHARE = 0.9  # decoded media ending before this share of the declared duration is truncated


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    has_audio: bool
    has_video: bool
    width: int = 0
    height: int = 0
    fps: Fraction = Fraction(25)
    duration: float | None = None  # as the container declares it


def probe(path: str | Path) -> MediaInfo:
    """Check that `path` is media avcall can process, or raise an InputError saying why."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        with av.open(str(path)) as container:
            audio = container.streams.audio[0] if container.streams.audio else None
            video = container.streams.video[0] if container.streams.video else None
            duration = container.duration / av.time_base if container.duration else None
            if audio is None and video is None:
                raise InputError(f"{path}: holds no audio or video stream")
            for stream in (audio, video):
                if stream is not None and stream.codec_context is None:  # a codec FFmpeg does not know
                    raise InputError(f"{path}: its {stream.type} is in a format avcall cannot decode, or damaged")
            if video is not None:
                w, h = video.codec_context.width, video.codec_context.height
                if min(w, h) < MIN_SIDE:
                    raise InputError(f"{path}: video is {w}x{h}, too small to find a face in "
                                     f"(at least {MIN_SIDE}x{MIN_SIDE})")
                if max(w, h) > MAX_SIDE:
                    raise InputError(f"{path}: video is {w}x{h}, larger than avcall processes "
                                     f"({MAX_SIDE} px on the long side); downscale it first, e.g. "
                                     f"ffmpeg -i {path.name} -vf scale=1920:-2 smaller.mp4")
                rate = video.average_rate or video.guessed_rate or Fraction(25)
                return MediaInfo(path, audio is not None, True, w, h, Fraction(rate), duration)
            return MediaInfo(path, True, False, duration=duration)
    except InputError:
        raise
    except av.EOFError:
        raise InputError(f"{path}: holds no audio or video frames (0 s), or is cut short") from None
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise InputError(f"{path}: not a media file avcall can read, or damaged ({_reason(err)})") from None


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err).splitlines()[0][:120]


class FileSource(Source):
    def __init__(self, path: str | Path, *, clock: SessionClock | None = None, realtime: bool = False,
                 audio: bool = True, video: bool = True, start_at: float | None = None) -> None:
        """`start_at`: with `realtime`, the session time media time 0 falls on (default: when it starts)."""
        self.info = probe(path)
        self.clock = clock or SessionClock()
        self.realtime = realtime
        self.start_at = start_at
        self.want_audio = audio and self.info.has_audio
        self.want_video = video and self.info.has_video
        self.decoded_until = 0.0  # media time reached, for progress
        self._offset = 0.0  # session time of media time 0
        self._buffer: list[Frame] = []
        self._ahead: list[tuple[float, int, Frame]] = []  # realtime: decoded frames by (pts, decode order)
        self._order = itertools.count()
        self._ended = False
        self._frames: Iterator[list[Frame]] | None = None
        self._worker: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avcall-file")
        self._frames = self._decode()
        if self.realtime:
            self._offset = self.clock.now() if self.start_at is None else self.start_at

    async def recv(self) -> Frame:
        loop = asyncio.get_running_loop()
        if self.realtime:
            return await self._recv_paced(loop)
        while not self._buffer:
            batch = await loop.run_in_executor(self._worker, next, self._frames, None)
            if batch is None:
                raise SourceEnded
            self._buffer = batch
        return self._buffer.pop(0)

    async def _recv_paced(self, loop: asyncio.AbstractEventLoop) -> Frame:
        """The next frame by pts, at its pts. A video decoder gives a frame out a few packets after its own
        (frame threads, B-frame reordering) while the audio interleaved with them is already due: decoding
        READ_AHEAD_S ahead and releasing in pts order keeps each frame on time, as a camera would."""
        while not self._ended and (not self._ahead or self._ahead[-1][0] - self._ahead[0][0] < READ_AHEAD_S):
            batch = await loop.run_in_executor(self._worker, next, self._frames, None)
            if batch is None:
                self._ended = True
                break
            for frame in batch:
                bisect.insort(self._ahead, (frame.pts, next(self._order), frame))
        if not self._ahead:
            raise SourceEnded
        frame = self._ahead.pop(0)[2]
        delay = self.clock.monotonic_at(frame.pts) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return frame

    async def stop(self) -> None:
        if self._worker is not None:
            if self._frames is not None:  # closes the container on the thread that uses it
                await asyncio.get_running_loop().run_in_executor(self._worker, self._frames.close)
            self._worker.shutdown(wait=True)
            self._worker = None

    def _decode(self) -> Iterator[list[Frame]]:
        """Batches of frames in decode order, one batch per demuxed packet."""
        info = self.info
        end = 0.0
        damaged_at: float | None = None  # media time of the first frame the decoder found damaged
        try:
            with av.open(str(info.path)) as container:
                start = container.start_time / av.time_base if container.start_time else 0.0
                audio = container.streams.audio[0] if self.want_audio else None
                video = container.streams.video[0] if self.want_video else None
                if video is not None:
                    video.thread_type = "AUTO"
                resampler = mono_16k_resampler()
                chunker = HopChunker(resync_s=float("inf"), rewind_s=float("inf"))  # files: count from the first pts
                frame_period = 1 / float(info.fps)
                index, last_video, audio_started = 0, None, False
                for packet in container.demux([s for s in (audio, video) if s is not None]):
                    batch: list[Frame] = []
                    for decoded in packet.decode():
                        t = (decoded.time - start) if decoded.time is not None else None
                        if decoded.is_corrupt and damaged_at is None:  # a cut file's last frame, typically
                            damaged_at = t if t is not None else end
                        if packet.stream is video:
                            t = t if t is not None else (last_video + frame_period if last_video is not None else 0.0)
                            last_video = t
                            batch.append(VideoFrame(pts=t + self._offset, index=index,
                                                    image=decoded.to_ndarray(format="bgr24")))
                            index += 1
                            end = max(end, t + frame_period)
                        else:
                            samples = frames_to_mono(resampler.resample(decoded))
                            first = None if audio_started or t is None else t + self._offset
                            audio_started = audio_started or first is not None
                            batch.extend(chunker.push(samples, first))
                            if t is not None:
                                end = max(end, t + decoded.samples / decoded.sample_rate)
                    self.decoded_until = end
                    if batch:
                        yield batch
                if audio is not None:
                    tail = chunker.push(frames_to_mono(resampler.resample(None))) + chunker.flush()
                    if tail:
                        yield tail
        except InputError:
            raise
        except (av.FFmpegError, ValueError) as err:
            raise InputError(f"{info.path}: damaged or truncated media at {end:.1f} s ({_reason(err)})") from None
        if end == 0.0:
            raise InputError(f"{info.path}: holds no audio or video frames (0 s)")
        if info.duration and info.duration > 1.0 and end < TRUNCATED_SHARE * info.duration:
            raise InputError(f"{info.path}: truncated: the file declares {info.duration:.1f} s "
                             f"but its media ends at {end:.1f} s")
        if damaged_at is not None:  # processed, but say so: a cut file can declare only what it holds
            self.incidents.note("input_damaged", damaged_at + self._offset, path=str(info.path),
                                reached_s=round(end, 3))
