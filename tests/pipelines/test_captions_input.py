"""What the recogniser hears: a noise suppressor's output mixed with the voice as recorded (`DryWet`), made
by the captioner as a call runs it, hop by hop, whatever the size of the frames that come in."""

from __future__ import annotations

import numpy as np
import pytest

from avcall.pipelines.errors import InputError
from avcall.pipelines.frames import SAMPLE_RATE
from avcall.pipelines.stages.captioner import HEARS, Captioner, DryWet
from avcall.pipelines.suppressors import open_suppressor


def test_the_mix_is_the_suppressors_output_and_the_voice_delayed_alike():
    rng = np.random.default_rng(0)
    voice = (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    mix = DryWet("rnnoise@0.3")
    heard = np.concatenate([mix(voice[i:i + 250]) for i in range(0, len(voice), 250)])  # frames of 250 samples
    assert len(heard) == len(voice) // 160 * 160  # whole hops out, the rest waits
    lag = mix.suppressor.delay
    assert mix.delay_s == lag / SAMPLE_RATE > 0
    cleaned = open_suppressor("rnnoise").enhance_clip(voice)  # the same suppressor over the clip, delay taken off
    n = len(heard) - lag
    np.testing.assert_allclose(heard[lag:], 0.3 * cleaned[:n] + 0.7 * voice[:n], atol=1e-4)


def test_raw_is_the_voice_itself_and_a_bad_mix_is_one_line():
    assert Captioner(object(), hears="raw").mix is None
    default = Captioner(object()).mix  # HEARS: what docs/captions.md measured best
    assert (default is None) == (HEARS == "raw")
    for bad in ("rnnoise@0", "rnnoise@2", "rnnoise@x"):
        with pytest.raises(InputError, match="SUPPRESSOR@W"):
            DryWet(bad)
    with pytest.raises(InputError, match="unknown enhancer"):
        DryWet("nothing@0.3")
