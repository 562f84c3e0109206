"""Echo cancellers behind one interface: the far end's 10 ms hops in (`render`), the microphone's out clean.

`aec3`: WebRTC's audio processing module with its echo canceller AEC3 (a linear filter whose delay is found
by its own delay estimator, then a non-linear suppressor of the residual echo), as the `livekit` wheel ships
it (`rtc.AudioProcessingModule`; noise suppression, gain control and the high-pass filter left off: the
noise suppressor after it is avcall's own). `speex`: speexdsp's MDF adaptive filter (the `speexdsp` binding,
no residual-echo suppressor there), the baseline `avcall bench echo` measures it against. Neither is ours:
both are the libraries' own cancellers, fed 16 kHz int16 hops.

Both keep the far end's hops in the order they came; `capture(hop)` cancels what of them is in the hop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque

import numpy as np

from .errors import DeviceError
from .frames import HOP_SAMPLES, SAMPLE_RATE

CANCELLERS = ("aec3", "speex")


def to_int16(hop: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(hop, np.float32), -1.0, 32767 / 32768) * 32768).astype(np.int16)


class Canceller(ABC):
    name: str
    delay: int = 0  # samples the output lags the microphone by

    @abstractmethod
    def render(self, hop: np.ndarray) -> None:
        """One hop (HOP_SAMPLES float32) of what the loudspeaker plays."""

    @abstractmethod
    def capture(self, hop: np.ndarray) -> np.ndarray:
        """One hop of the microphone in, the same hop with the echo taken out."""

    def close(self) -> None:
        """Release the native state."""


class Aec3(Canceller):
    name = "aec3"
    # livekit 1.1.10's module hands the capture back 128 samples (8 ms) late, and high-passed below ~80 Hz as
    # WebRTC does whenever its echo canceller runs (measured: tests/pipelines/test_echo.py)
    delay = 128

    def __init__(self) -> None:
        try:
            from livekit import rtc
        except ImportError as err:
            raise DeviceError(f"echo control needs the livekit package (pip install livekit==1.1.10): {err}") from None
        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True)
        # two frames reused for every hop: the module processes them in place
        self._far = rtc.AudioFrame.create(SAMPLE_RATE, 1, HOP_SAMPLES)
        self._near = rtc.AudioFrame.create(SAMPLE_RATE, 1, HOP_SAMPLES)

    def render(self, hop: np.ndarray) -> None:
        np.frombuffer(self._far.data, np.int16)[:] = to_int16(hop)  # the view writes through to the frame
        self._apm.process_reverse_stream(self._far)

    def capture(self, hop: np.ndarray) -> np.ndarray:
        samples = np.frombuffer(self._near.data, np.int16)
        samples[:] = to_int16(hop)
        self._apm.process_stream(self._near)
        return samples.astype(np.float32) / 32768.0

    def close(self) -> None:
        self._apm = None


class Speex(Canceller):
    """speexdsp's canceller pairs each microphone hop with one far-end hop: the oldest not yet used (silence
    when none is waiting); its filter (`tail_s`) must span the delay between the two plus the room's tail."""

    name = "speex"

    def __init__(self, tail_s: float = 0.3) -> None:
        try:
            import speexdsp
        except ImportError as err:
            raise DeviceError(f"the speex canceller needs speexdsp (pip install speexdsp==0.1.1): {err}") from None
        self._state = speexdsp.EchoCanceller.create(HOP_SAMPLES, int(tail_s * SAMPLE_RATE), SAMPLE_RATE)
        self._far: deque[bytes] = deque(maxlen=50)  # half a second: more waiting means the far end stalled
        self._silence = bytes(2 * HOP_SAMPLES)

    def render(self, hop: np.ndarray) -> None:
        self._far.append(to_int16(hop).tobytes())

    def capture(self, hop: np.ndarray) -> np.ndarray:
        far = self._far.popleft() if self._far else self._silence
        out = self._state.process(to_int16(hop).tobytes(), far)
        return np.frombuffer(out, np.int16).astype(np.float32) / 32768.0

    def close(self) -> None:
        self._state = None


def open_canceller(name: str) -> Canceller:
    if name == "aec3":
        return Aec3()
    if name == "speex":
        return Speex()
    raise ValueError(f"no echo canceller {name!r}; choose one of {', '.join(CANCELLERS)}")


def cancel_clip(canceller: Canceller, mic: np.ndarray, far: np.ndarray) -> np.ndarray:
    """Offline: hop k of `far` rendered just before hop k of `mic` is captured (the two aligned sample for
    sample, as the live stage aligns them by their capture times). As many samples out as in, as they come
    out (`canceller.delay` late)."""
    n = min(len(mic), len(far)) // HOP_SAMPLES * HOP_SAMPLES
    out = np.empty(n, np.float32)
    for i in range(0, n, HOP_SAMPLES):
        canceller.render(far[i:i + HOP_SAMPLES])
        out[i:i + HOP_SAMPLES] = canceller.capture(mic[i:i + HOP_SAMPLES])
    return out
