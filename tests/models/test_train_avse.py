"""The enhancer's training recipe end to end on a tiny corpus: train, resume from the checkpoint, export to
ONNX with the parity check, and the manifest entry that credits the voices."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from avcall.models.data.make import MakeConfig, make_corpus
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "corpus"
    make_corpus(MakeConfig(out=out, minutes=0.15, seed=1, workers=2, real_voices=None, video_share=0.0))
    return out


@pytest.mark.parametrize("flags", [[], ["--audio-only"], ["--arch", "avdcnn"]])
def test_train_resume_and_export(tiny_corpus, tmp_path, flags):
    run = tmp_path / "run"
    common = ["train", "avse", "--corpus", str(tiny_corpus), "--out", str(run), "--batch", "2", "--hidden", "32",
              "--workers", "0", "--ckpt-every", "2", "--device", "cpu", "-q", *flags]
    r = run_cli(*common, "--steps", "2")
    assert r.returncode == 0, r.stderr
    if not flags:  # the loop's resume is the same for every net (models/training.py): checked once
        r = run_cli(*common, "--steps", "4")  # same folder: resumes at step 2
        assert r.returncode == 0, r.stderr
    steps = [json.loads(line)["step"] for line in (run / "train.log").read_text().splitlines()]
    assert steps == ([2] if flags else [2, 4])
    final = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(final) >= {"val_si_sdr", "val_si_sdr_improvement", "val_si_sdr_no_face"}

    onnx = tmp_path / "weights" / "model.onnx"
    onnx.parent.mkdir()
    e = subprocess.run([sys.executable, "-m", "avcall.models.avse.export", str(run / "model.pt"), "-o", str(onnx)],
                       capture_output=True, text=True, timeout=300)
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout)["parity"]["ok"]
    entry = json.loads((onnx.parent / "manifest.json").read_text())["models"]["model.onnx"]
    assert len(entry["sha256"]) == 64 and entry["recipe"].startswith("avcall train avse")
    assert entry["corpus"]["seed"] == 1 and entry["latency_ms"] == 20


def test_a_packed_pool_gives_back_the_corpus_voices_and_lips(tiny_corpus, tmp_path):
    """The two files that carry a corpus's voices to a training machine without TTS engines."""
    import numpy as np

    from avcall.models.avse.pool import load_pool, pack_pool, pool_from_corpus

    pool = pool_from_corpus(tiny_corpus)
    pack_pool(pool, tmp_path / "pool")
    back = load_pool(tmp_path / "pool")
    assert [u.voice for u in back] == [u.voice for u in pool]
    for a, b in zip(pool, back):
        assert np.abs(a.audio - b.audio).max() <= 1 / 32767 + 1e-6  # 16-bit
        assert np.array_equal(a.lips, b.lips) and np.array_equal(a.present, b.present)
