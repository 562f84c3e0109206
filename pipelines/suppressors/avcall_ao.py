"""The project's own audio-only enhancer (a causal GRU mask on a 20 ms window, models/weights/avse_ao.onnx)
behind the suppressor interface. It stays while it measures best somewhere: it hurts a competing talker
least (bench/enhance_eval.json)."""

from __future__ import annotations

import numpy as np

from avcall.pipelines.runtime import batched_session, require_weights
from avcall.pipelines.nets.enhancer import AO_WEIGHTS, DELAY, StreamingEnhancer

from .base import Suppressor


class AvcallAO(Suppressor):
    name = "avcall-ao"
    delay = DELAY

    def __init__(self, *, prefer_gpu: bool = False) -> None:
        path = require_weights(AO_WEIGHTS)
        # every stream of the process is stepped in one batched call per hop
        session = batched_session(path, {"logpow": 0, "state_in": 1, "mask": 0, "state_out": 1}, prefer_gpu=prefer_gpu)
        self.enhancer = StreamingEnhancer.from_sessions(None, session)

    def reset(self) -> None:
        self.enhancer.reset()

    def _process(self, hop: np.ndarray) -> np.ndarray:
        return self.enhancer.process_hop(hop)
