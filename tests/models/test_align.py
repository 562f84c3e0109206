"""Forced alignment and recognition (models/data/align.py) against flite's exact phone times and TIMIT's labels."""

from __future__ import annotations

import difflib
import itertools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from avcall.models.data.align import (
    SAMPLE_RATE,
    align,
    normalise,
    recognise,
    timing_for,
)
from avcall.pipelines.face.phonemes import PHONES, SILENCE, Timing
from scipy.signal import resample_poly

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")


def flite(text: str, tmp_path: Path, voice: str = "slt") -> tuple[np.ndarray, list[tuple[str, float]]]:
    """flite's 16 kHz audio and its phones as (phone, start s), "pau" -> "sil"."""
    wav = tmp_path / f"{voice}.wav"
    out = subprocess.run(["flite", "-voice", voice, "-psdur", "-t", text, "-o", str(wav)], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    audio, sr = sf.read(wav, dtype="float32")
    if sr != SAMPLE_RATE:
        audio = resample_poly(audio, SAMPLE_RATE, sr).astype(np.float32)
    phones, t = [], 0.0
    for item in out.split():
        name, _, end = item.rpartition(":")
        phones.append((SILENCE if name == "pau" else name, t))
        t = float(end)
    return audio, phones


def boundary_errors(truth: list[tuple[str, float]], timing: Timing) -> list[float]:
    """|ours - true| for boundaries between consecutive phones both sequences agree on (ax = ah, axr = er)."""
    same = {"ax": "ah", "axr": "er"}

    def merged(seq):
        out = []
        for p, start in seq:
            p = same.get(p, p)
            if not (out and p == SILENCE and out[-1][0] == SILENCE):
                out.append((p, start))
        return out

    a, b = merged(truth), merged([(p.phone, p.start) for p in timing.phones])
    matcher = difflib.SequenceMatcher(None, [p for p, _ in a], [p for p, _ in b], autojunk=False)
    return [abs(a[i + k][1] - b[j + k][1]) for i, j, n in matcher.get_matching_blocks() for k in range(1, n)]


def assert_covers(timing: Timing, audio: np.ndarray) -> None:
    """Phones of the project's set, consecutive, from 0 (a leading "sil") to the end of the audio; words inside."""
    duration = len(audio) / SAMPLE_RATE
    phones = timing.phones
    assert phones, timing
    assert phones[0].phone == SILENCE and phones[0].start == 0.0
    assert phones[-1].end == pytest.approx(duration, abs=1e-6)
    for p, q in itertools.pairwise(phones):
        assert p.end == pytest.approx(q.start, abs=1e-9), (p, q)
    for p in phones:
        assert p.phone in PHONES and p.end >= p.start, p
    for w in timing.words:
        assert 0.0 <= w.start <= w.end <= duration + 1e-6, w
    assert timing.method


@needs_flite
def test_alignment_of_flite_speech_is_within_a_few_frames(tmp_path):
    text = "The birch canoe slid on the smooth planks, and glue the sheet to the dark blue background."
    audio, truth = flite(text, tmp_path)
    timing = align(audio, text)
    assert timing.method == "align:pocketsphinx"
    assert [w.word for w in timing.words] == normalise(text)
    assert_covers(timing, audio)
    errors = boundary_errors(truth, timing)
    assert len(errors) > 30
    assert np.median(errors) < 0.040, np.median(errors)
    # words are where their phones are, in order
    starts = [w.start for w in timing.words]
    assert starts == sorted(starts)


@needs_flite
def test_out_of_vocabulary_word_gets_a_pronunciation_and_aligns(tmp_path):
    text = "The blorptastic canoe slid on the smooth planks."
    audio, truth = flite(text, tmp_path, voice="kal16")
    timing = align(audio, text)
    assert timing.method.startswith("align:pocketsphinx+g2p:"), timing.method
    assert [w.word for w in timing.words] == normalise(text)
    assert_covers(timing, audio)
    made_up = timing.words[1]
    assert made_up.word == "blorptastic" and made_up.end - made_up.start > 0.2
    inside = [p for p in timing.phones if made_up.start <= p.start < made_up.end]
    assert len(inside) >= 6 and all(p.phone != SILENCE for p in inside)
    assert np.median(boundary_errors(truth, timing)) < 0.040


@pytest.mark.parametrize("n_samples", [0, 1, 100, 1600, 16000])
def test_silence_and_too_short_audio_give_a_valid_timing(n_samples):
    silence = np.zeros(n_samples, np.float32)
    for timing in (align(silence, "Hello there, how are you?"), recognise(silence), timing_for(silence, None)):
        assert_covers(timing, silence)
        assert all(p.phone == SILENCE for p in timing.phones)


def test_odd_input_never_raises():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE // 5) / SAMPLE_RATE)).astype(np.float32)
    cases = [(noise, "a few words of text"), (tone, "far too many words for a fifth of a second of audio"),
             (noise, "?!..."), (np.full(8000, np.nan, np.float32), "nan"), (noise, "")]
    for audio, text in cases:
        timing = align(audio, text)
        assert_covers(timing, audio)
        assert timing.method


@needs_flite
def test_text_that_does_not_match_falls_back_and_says_so(tmp_path):
    audio, _ = flite("Rice is often served in round bowls.", tmp_path)
    timing = align(audio, "The quick brown fox jumps over the lazy dog near the riverbank today.")
    assert_covers(timing, audio)
    assert timing.method.startswith(("recognise+align:pocketsphinx+mismatch", "align:even-spread")), timing.method


@needs_flite
def test_recognise_finds_the_words_where_they_were_said(tmp_path):
    text = "Four hours of steady work faced us."
    audio, truth = flite(text, tmp_path, voice="awb")
    timing = recognise(audio)
    assert timing.method.startswith("recognise+align:pocketsphinx")
    assert_covers(timing, audio)
    heard = [w.word for w in timing.words]
    assert len(set(heard) & set(normalise(text))) >= 3, heard
    # the recognised words lie over the spoken part, not the silences around it
    speech = [t for p, t in truth if p != SILENCE]
    first, last = speech[0], truth[-1][1]
    assert timing.words[0].start == pytest.approx(first, abs=0.1)
    assert timing.words[-1].end == pytest.approx(last, abs=0.1)
    assert timing_for(audio, None).words == timing.words


@needs_flite
def test_integer_and_stereo_input(tmp_path):
    text = "Help the woman get back to her feet."
    audio, _ = flite(text, tmp_path, voice="rms")
    as_int = (audio * 32767).astype(np.int16)
    stereo = np.stack([audio, audio], axis=1)
    for x in (as_int, stereo):
        timing = align(x, text)
        assert timing.method == "align:pocketsphinx" and [w.word for w in timing.words] == normalise(text)
        assert timing.phones[-1].end == pytest.approx(len(audio) / SAMPLE_RATE)


def test_normalise_transcripts():
    assert normalise("DON'T stop, John's 'quoted' dog!") == ["don't", "stop", "john's", "quoted", "dog"]
    assert normalise("In 1984 I had 2,500 apples & 3.5 pears on the 21st.") == [
        "in", "nineteen", "eighty", "four", "i", "had", "two", "thousand", "five", "hundred", "apples", "and",
        "three", "point", "five", "pears", "on", "the", "twenty", "first"]
    assert normalise("rock-n-roll, 100% café") == ["rock", "n", "roll", "one", "hundred", "percent", "cafe"]
    assert normalise("  ...  ") == []


# TIMIT TRAIN/DR1/FCJF0/SA1 (= LDC93S1) word boundaries in samples at 16 kHz, from SA1.WRD as quoted in
# github.com/fancyerii/fancyerii.github.io, _kaldi/timit.md.
LDC93S1_WRD = [(3050, 5723), (5723, 10337), (9190, 11517), (11517, 16334), (16334, 21199), (21199, 22560),
               (22560, 28064), (28064, 33360), (33754, 37556), (37556, 40313), (40313, 44586)]


def test_real_speech_word_boundaries_against_timit_labels(shared_data):
    audio, sr = sf.read(shared_data / "speech" / "DeepSpeech_LDC93S1.wav", dtype="float32")
    assert sr == SAMPLE_RATE
    text = "She had your dark suit in greasy wash water all year."
    timing = align(audio, text)
    assert timing.method == "align:pocketsphinx"
    assert [w.word for w in timing.words] == normalise(text)
    assert_covers(timing, audio)
    errors = [abs(t - ref / SAMPLE_RATE) for w, (s, e) in zip(timing.words, LDC93S1_WRD)
              for t, ref in ((w.start, s), (w.end, e))]
    assert np.median(errors) < 0.025 and max(errors) < 0.1, errors
