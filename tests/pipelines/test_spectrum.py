"""The one framing/log-mel module every net's features go through."""

import numpy as np

from avcall.pipelines.nets.spectrum import HOP, LIPS_VOICE_MEL, N_FFT, frames


def test_causal_frames_end_at_their_hop_and_centred_frames_sit_on_it():
    x = np.arange(1, 10 * HOP + 1, dtype=np.float32)
    causal = frames(x, N_FFT)
    assert causal.shape == (10, N_FFT)
    for i in range(10):  # frame i's last sample is sample (i + 1) * HOP - 1, zeros before the signal starts
        assert causal[i, -1] == x[(i + 1) * HOP - 1]
        assert np.array_equal(causal[i, max(0, N_FFT - (i + 1) * HOP):], x[max(0, (i + 1) * HOP - N_FFT):(i + 1) * HOP])
    centred = frames(x, N_FFT, centred=True)
    for i in range(10):  # frame i's middle sample is sample i * HOP; zeros past the end
        assert centred[i, N_FFT // 2] == x[i * HOP]
    assert not centred[9, N_FFT // 2 + HOP:].any()


def test_one_frame_at_a_time_equals_the_whole_clip():
    x = np.random.default_rng(1).standard_normal(50 * HOP).astype(np.float32)
    whole = LIPS_VOICE_MEL(frames(x, N_FFT))
    buffer = np.zeros(N_FFT, np.float32)
    for i in range(50):  # as a live stream sees it: a sliding window, one hop in each time
        buffer = np.concatenate([buffer[HOP:], x[i * HOP:(i + 1) * HOP]])
        np.testing.assert_allclose(LIPS_VOICE_MEL(buffer), whole[i], rtol=1e-5, atol=1e-5)
