"""`avcall eval captions`: what the captioner hears (raw, a suppressor's output, mixes of both) and Whisper's
decodings, side by side in one run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avcall.app.eval.captions import Input, format_table, heard_inputs
from avcall.pipelines.errors import InputError

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_inputs_are_read_from_their_names():
    assert Input.parse("raw", "avcall-nogate") == Input("raw")
    assert Input.parse("dfn3@0.3", "avcall-nogate") == Input("dfn3@0.3", "dfn3", 0.3)
    assert Input.parse("enhanced", "avcall-nogate") == Input("enhanced", "avcall-nogate", 1.0)
    for bad in ("dfn3@0", "dfn3@1.5", "dfn3@x"):
        with pytest.raises(InputError, match="METHOD@W"):
            Input.parse(bad, "avcall-nogate")


class Halving:
    """A stand-in suppressor: halves the voice, 10 ms late, and counts its runs."""

    class suppressor:
        latency_ms = 10.0

    runs = 0

    def enhance(self, audio, lips, offset):
        Halving.runs += 1
        return audio * 0.5


def test_each_method_runs_once_and_a_mix_is_wet_plus_dry():
    audio = np.linspace(-1, 1, 1600).astype(np.float32)
    inputs = [Input("raw"), Input("h", "h"), Input("h@0.3", "h", 0.3)]
    made = heard_inputs(audio, inputs, {"h": Halving()}, None, 0.0)
    assert Halving.runs == 1 and list(made) == ["raw", "h", "h@0.3"]
    assert np.array_equal(made["raw"][0], audio) and made["raw"][1] == 0.0
    np.testing.assert_allclose(made["h"][0], 0.5 * audio)
    np.testing.assert_allclose(made["h@0.3"][0], 0.3 * 0.5 * audio + 0.7 * audio, atol=1e-6)
    assert made["h@0.3"][1] == pytest.approx(0.01)  # the suppressor's delay counts in the latency


def test_a_variant_is_an_engine_and_the_captioners_options():
    from avcall.app.eval.captions import variant
    from avcall.pipelines.asr import split_specs

    specs = split_specs("whisper,whisper[beam=3,every=0.4]{agree_new=1,tail_s=0.2},pocketsphinx{pause_s=1}")
    assert specs == ["whisper", "whisper[beam=3,every=0.4]{agree_new=1,tail_s=0.2}", "pocketsphinx{pause_s=1}"]
    assert variant(specs[0]) == ("whisper", {})
    assert variant(specs[1]) == ("whisper[beam=3,every=0.4]", {"agree_new": True, "tail_s": 0.2})
    assert variant("whisper{agree_new=0}") == ("whisper", {"agree_new": False})
    for bad in ("whisper{hears=raw}", "whisper{tail_s=x}"):
        with pytest.raises(InputError, match="--asr"):
            variant(bad)


@pytest.mark.skipif(not (DATA / "speech").exists(), reason="../shared/data is absent (the real recordings)")
def test_engines_inputs_and_decodings_side_by_side(tmp_path):
    from avcall.app.cli import main

    out = tmp_path / "c.json"
    assert main(["eval", "captions", "--clips", "1", "--conditions", "clean", "--raw-only", "--inputs", "raw,dtln@0.5",
                 "--asr", "whisper,whisper[beam=3,prompt=0]", "--out", str(out), "-q"]) == 0
    report = json.loads(out.read_text())
    assert report["meta"]["inputs"] == ["raw", "dtln@0.5"]
    for engine in ("whisper", "whisper[beam=3,prompt=0]"):
        for path in ("raw", "dtln@0.5"):
            d = report["summary"][engine]["clean"][path]
            assert 0 <= d["wer"] <= 0.5 and d["partial_latency_wall_s"] is not None and d["cpu_per_audio_s"] > 0
        assert report["summary"][engine]["clean"]["dtln@0.5"]["input_cpu_per_audio_s"] == 0  # the captioner's own
    table = format_table(report["summary"])
    assert "| whisper[beam=3,prompt=0] | dtln@0.5 | clean |" in table
