"""The one streaming interface every noise suppressor runs behind.

`push(hop)`: 10 ms of 16 kHz mono float32 in (HOP_SAMPLES), 10 ms out. The output lags the input by a fixed
`delay` samples (the backend's own framing and look-ahead, plus whatever re-blocking 10 ms hops into its
native block costs); `latency_ms` is the algorithmic latency a listener hears: that delay plus the hop that
must be complete before any of it is processed. State is explicit and per stream: `reset()` starts a new
stream; the heavy part (an onnxruntime session, a native library) is shared by every stream of a process.

`enhance_clip(audio)` is the same `push` in a loop with the delay taken off: what offline outputs and
`avcall eval enhance` use, so the clip path and the live path give the same samples.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..frames import HOP_SAMPLES, SAMPLE_RATE


class Suppressor(ABC):
    name: str  # the backend's name as users pick it (`--enhance NAME`)
    delay: int  # samples the output lags the input by

    @property
    def latency_ms(self) -> float:
        return 1000.0 * (self.delay + HOP_SAMPLES) / SAMPLE_RATE

    @abstractmethod
    def reset(self) -> None:
        """A new stream: buffers emptied, recurrent state zeroed."""

    @abstractmethod
    def _process(self, hop: np.ndarray) -> np.ndarray:
        """One checked hop (HOP_SAMPLES float32) in, one out."""

    def push(self, hop: np.ndarray) -> np.ndarray:
        hop = np.asarray(hop, np.float32).reshape(-1)
        if len(hop) != HOP_SAMPLES:
            raise ValueError(f"a hop is {HOP_SAMPLES} samples, got {len(hop)}")
        return self._process(hop)

    def enhance_clip(self, audio: np.ndarray) -> np.ndarray:
        """A whole clip, as many samples out as in and aligned with the input. Resets before and after."""
        audio = np.asarray(audio, np.float32).reshape(-1)
        n = len(audio)
        hops = -(-(n + self.delay) // HOP_SAMPLES)  # enough hops to bring out the last sample
        x = np.zeros(hops * HOP_SAMPLES, np.float32)
        x[:n] = audio
        self.reset()
        out = np.concatenate([self._process(x[i:i + HOP_SAMPLES]) for i in range(0, len(x), HOP_SAMPLES)])
        self.reset()
        return out[self.delay:self.delay + n]


class Reblocker:
    """10 ms hops to and from a backend's native block of `block` samples, at a constant delay.

    Blocks are cut from the incoming samples as soon as they are complete; the output queue starts with
    the fewest zeros (`delay`) that guarantee a full hop is always ready: hop k has brought 160 k samples
    and `block * floor(160 k / block)` of them have come out."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.delay = max((k * HOP_SAMPLES) % block for k in range(1, block + 1))
        self.reset()

    def reset(self) -> None:
        self._in = np.zeros(0, np.float32)
        self._out = np.zeros(self.delay, np.float32)

    def push(self, hop: np.ndarray, step) -> np.ndarray:
        """`step(block) -> block` on each complete block; one hop out."""
        self._in = np.concatenate([self._in, hop])
        done = []
        while len(self._in) >= self.block:
            done.append(step(self._in[:self.block]))
            self._in = self._in[self.block:]
        if done:
            self._out = np.concatenate([self._out, *done])
        out, self._out = self._out[:HOP_SAMPLES], self._out[HOP_SAMPLES:]
        return out


class Resampler3:
    """Streaming 16 kHz <-> 48 kHz by a factor of 3: one linear-phase low-pass FIR (cut at 7.6 kHz), run with
    its state carried across calls. Each direction delays by (TAPS - 1) / 2 samples at 48 kHz."""

    TAPS = 97  # 48 samples at 48 kHz (1 ms) of delay each way

    def __init__(self) -> None:
        from scipy.signal import firwin

        self.taps = firwin(self.TAPS, 7600, fs=48_000).astype(np.float64)
        self.reset()

    @property
    def delay_48k(self) -> int:
        return (self.TAPS - 1) // 2

    def reset(self) -> None:
        self._up = np.zeros(self.TAPS - 1)
        self._down = np.zeros(self.TAPS - 1)

    def up(self, x16: np.ndarray) -> np.ndarray:
        from scipy.signal import lfilter

        z = np.zeros(3 * len(x16))
        z[::3] = x16
        y, self._up = lfilter(3.0 * self.taps, 1.0, z, zi=self._up)
        return y.astype(np.float32)

    def down(self, x48: np.ndarray) -> np.ndarray:
        from scipy.signal import lfilter

        y, self._down = lfilter(self.taps, 1.0, np.asarray(x48, np.float64), zi=self._down)
        return y[::3].astype(np.float32)
