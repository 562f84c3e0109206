"""Audio at the source: mixing to mono, resampling to 16 kHz and cutting into 10 ms hops, done once."""

from __future__ import annotations

import av
import numpy as np

from .frames import HOP_SAMPLES, SAMPLE_RATE, AudioFrame


def mono_16k_resampler() -> av.AudioResampler:
    """A streaming resampler (state carried across calls) to 16 kHz mono float32."""
    return av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)


def resample_block(resampler: av.AudioResampler, block: np.ndarray | None, rate: int) -> np.ndarray:
    """Push one (samples, channels) float32 block through `resampler`; None flushes it."""
    if block is None:
        frames = resampler.resample(None)
    else:
        packed = np.ascontiguousarray(block, dtype=np.float32).reshape(1, -1)
        layout = "mono" if block.shape[1] == 1 else "stereo"
        frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)
        frame.sample_rate = rate
        frames = resampler.resample(frame)
    return frames_to_mono(frames)


def frames_to_mono(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, np.float32)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)


class HopChunker:
    """Cuts a 16 kHz stream into 10 ms AudioFrames; pts count samples from the first one.

    A capture time given with `push` re-anchors the count when it is later than the count by more than
    `resync_s` (the device skipped samples). Stamps taken in a callback are late by however long the
    block waited, and blocks often come in bursts, so an earlier stamp is normal and moves nothing,
    unless it is off by more than `rewind_s` (the count itself is wrong).
    """

    def __init__(self, resync_s: float = 0.05, rewind_s: float = 1.0) -> None:
        self.resync_s = resync_s
        self.rewind_s = rewind_s
        self._t0: float | None = None
        self._emitted = 0
        self._pending = np.zeros(0, np.float32)

    def expected_pts(self) -> float | None:
        """When the next sample pushed is due if the stream goes on without a gap (None before the first)."""
        return self._next_pts() + len(self._pending) / SAMPLE_RATE if self._t0 is not None else None

    def push(self, samples: np.ndarray, pts: float | None = None) -> list[AudioFrame]:
        """Add samples whose first one was captured at `pts` (None: continues the previous ones)."""
        if pts is not None:
            expected = self.expected_pts()
            if expected is None or pts - expected > self.resync_s or expected - pts > self.rewind_s:
                self._t0 = pts - len(self._pending) / SAMPLE_RATE
                self._emitted = 0
        if self._t0 is None:
            self._t0 = 0.0
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        out = []
        while len(self._pending) >= HOP_SAMPLES:
            out.append(AudioFrame(pts=self._next_pts(), samples=self._pending[:HOP_SAMPLES].copy()))
            self._pending = self._pending[HOP_SAMPLES:]
            self._emitted += HOP_SAMPLES
        return out

    def flush(self) -> list[AudioFrame]:
        """The last partial hop, as a shorter frame (never padded with samples that were not there)."""
        if not len(self._pending) or self._t0 is None:
            return []
        frame = AudioFrame(pts=self._next_pts(), samples=self._pending.copy())
        self._emitted += len(self._pending)
        self._pending = np.zeros(0, np.float32)
        return [frame]

    def _next_pts(self) -> float:
        return (self._t0 or 0.0) + self._emitted / SAMPLE_RATE


LIMIT_DBFS = -1.0  # the enhanced voice's ceiling
LIMIT_RELEASE_S = 0.05  # the gain climbs back from full reduction to unity in this long


class Limiter:
    """A peak limiter with no look-ahead (no added delay): the gain drops at once to what keeps a sample under
    the ceiling and climbs back linearly over LIMIT_RELEASE_S. Nothing it returns exceeds the ceiling; below
    it, the voice passes untouched."""

    def __init__(self, ceiling_dbfs: float = LIMIT_DBFS, release_s: float = LIMIT_RELEASE_S) -> None:
        self.ceiling = float(10 ** (ceiling_dbfs / 20))
        self.rise = 1.0 / (release_s * SAMPLE_RATE)  # gain per sample on the way back up
        self.reset()

    def reset(self) -> None:
        self.gain = 1.0
        self.reduced = 0  # samples turned down so far (telemetry)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if not len(x):
            return x
        peak = np.abs(x).astype(np.float64)
        if self.gain >= 1.0 and peak.max() <= self.ceiling:
            return x
        need = np.minimum(1.0, self.ceiling / np.maximum(peak, 1e-12))
        ramp = self.rise * np.arange(1, len(x) + 1)
        # g[j] = min(need[j], need[k] + (j - k) rise for k < j, gain before + (j + 1) rise), capped at 1
        gain = np.minimum(np.minimum.accumulate(need - ramp + self.rise) + ramp - self.rise,
                          self.gain + ramp)
        gain = np.minimum(gain, 1.0)
        self.gain = float(gain[-1])
        self.reduced += int(np.count_nonzero(gain < 1.0))
        return np.minimum(np.abs(x * gain), self.ceiling).astype(np.float32) * np.sign(x)
