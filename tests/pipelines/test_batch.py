"""One batched model call per hop for every stream of the process gives each stream what its own run gives."""

from __future__ import annotations

import threading

import numpy as np

from avcall.pipelines.runtime import batched_session, require_weights, shared_session
from avcall.pipelines.nets.batch import BatchedSession
from avcall.pipelines.nets.enhancer import AO_WEIGHTS, StreamingEnhancer
from avcall.pipelines.nets.spectrum import HOP

AXES = {"logpow": 0, "state_in": 1, "mask": 0, "state_out": 1}


def voices(n: int, hops: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(hops * HOP) / 16_000
    return [(0.1 * np.sin(2 * np.pi * (150 + 60 * k) * t) * (1 + np.sin(2 * np.pi * 3 * t))
             + 0.03 * rng.standard_normal(len(t))).astype(np.float32) for k in range(n)]


def stream(session, audio: np.ndarray, out: list, barrier: threading.Barrier | None = None) -> None:
    enhancer = StreamingEnhancer.from_sessions(None, session)
    for k in range(len(audio) // HOP):
        if barrier is not None:
            barrier.wait()  # the streams' hops of one moment arrive together, as a call's 10 ms tick brings them
        out.append(enhancer.process_hop(audio[k * HOP:(k + 1) * HOP]))


def test_a_batched_step_gives_each_stream_its_own_run():
    plain = shared_session(require_weights(AO_WEIGHTS), prefer_gpu=False)
    batched = BatchedSession(plain, AXES, max_wait_s=0.05)
    clips = voices(3, hops=60)
    alone = []
    for clip in clips:
        out: list = []
        stream(plain, clip, out)
        alone.append(np.concatenate(out))
    together = [[] for _ in clips]
    barrier = threading.Barrier(len(clips))
    threads = [threading.Thread(target=stream, args=(batched, clip, out, barrier)) for clip, out in zip(clips, together)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for mine, theirs in zip(alone, together):
        np.testing.assert_allclose(np.concatenate(theirs), mine, rtol=1e-4, atol=1e-5)
    assert batched.stats.rows == 3 * 60
    assert batched.stats.largest == 3 and batched.stats.calls < 2 * 60  # batches formed: fewer calls than steps


def test_a_lone_stream_is_not_held_and_errors_reach_every_caller():
    class Failing:
        def run(self, names, feeds):
            raise RuntimeError("model failed")

    batched = BatchedSession(Failing(), AXES, max_wait_s=5.0)
    try:
        batched.run(["mask"], {"logpow": np.zeros((1, 1, 161), np.float32)})
    except RuntimeError as err:
        assert "model failed" in str(err)
    else:
        raise AssertionError("the error was swallowed")
    assert batched.stats.calls == 1  # one stream: run at once, not after max_wait_s


def test_every_stream_of_the_process_shares_one_batched_session():
    path = require_weights(AO_WEIGHTS)
    assert batched_session(path, AXES) is batched_session(path, AXES)
