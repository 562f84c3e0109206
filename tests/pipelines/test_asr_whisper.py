"""Whisper tiny.en from the installed wheel: the model file checked, nothing fetched, the engines' protocol,
local agreement in long speech, and a real recording captioned with its key words."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from avcall.app.eval.captions import caption
from avcall.models.data.align import normalise
from avcall.pipelines.asr import ResumableEngine, SpeechEngine, make_engine, resumable
from avcall.pipelines.errors import InputError
from avcall.pipelines.frames import SAMPLE_RATE, Word
from avcall.pipelines.stages.captioner import Captioner

pytest.importorskip("faster_whisper", reason="faster-whisper is not installed (scripts/setup.sh)")
from avcall.pipelines import asr_whisper  # noqa: E402
from avcall.pipelines.asr_whisper import TwoPassEngine, WhisperEngine, check_model, without_loops  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CLIP = DATA / "speech" / "DeepSpeech_arctic_a0024.wav"  # "It was my reports from the north which chiefly ..."


def test_the_model_file_is_checked_and_a_damaged_one_is_one_line(tmp_path):
    folder = asr_whisper.wheel_model_dir()
    assert check_model(folder) == folder  # the shipped model.bin has the pinned sha256
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(folder / name, tmp_path / name)
    with pytest.raises(InputError, match=r"model\.bin: missing"):
        check_model(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"not a model")
    damaged = r"model\.bin: damaged \(sha256 [0-9a-f]{12}…, expected 1a5afae06a4d…\)"
    with pytest.raises(InputError, match=damaged) as err:
        check_model(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="not a CTranslate2 Whisper model folder"):
        asr_whisper.load_model(tmp_path / "nowhere")


def test_loads_and_decodes_with_the_network_cut(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(asr_whisper, "_MODELS", {})
    engine = make_engine("whisper")
    engine.begin()
    engine.accept(np.zeros(SAMPLE_RATE, np.float32))
    assert engine.finish() == []  # silence: no words, no "thank you" made up


def test_a_process_that_loads_whisper_runs_blas_on_one_thread():
    """numpy's OpenBLAS spins its threads after the log-mel product of every decode (a third of the recogniser's
    CPU for nothing): a process that loads Whisper keeps it to one thread. In a fresh process, numpy as it starts."""
    import json
    import subprocess
    import sys

    code = ("import json, numpy\nfrom threadpoolctl import threadpool_info\n"
            "blas = lambda: [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
            "before = blas()\nfrom avcall.pipelines.asr_whisper import load_model\nload_model()\n"
            "print(json.dumps([before, blas()]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "2"})  # as on a 2-core machine
    assert run.returncode == 0, run.stderr
    before, after = json.loads(run.stdout.strip().splitlines()[-1])
    assert before == [2] and after == [1], (before, after)


def test_engines_follow_the_protocol():
    for spec, cls in (("whisper", WhisperEngine), ("two-pass", TwoPassEngine)):
        engine = make_engine(spec)
        assert isinstance(engine, cls) and isinstance(engine, SpeechEngine) and isinstance(engine, ResumableEngine)
        assert resumable(engine) and engine.agreement == 2
    assert not resumable(make_engine("pocketsphinx"))


def test_a_decoding_loop_is_kept_once():
    w = lambda text: [Word(t, i, i + 1) for i, t in enumerate(text.split())]  # noqa: E731
    texts = lambda words: " ".join(x.text for x in words)  # noqa: E731
    assert texts(without_loops(w("she had in greece in greece in greece in greece"))) == "she had in greece"
    assert texts(without_loops(w("at that high level the air is pure at that high level the"))) == \
        "at that high level the air is pure"
    assert texts(without_loops(w("a very very good day"))) == "a very very good day"


class Scripted:
    """A resumable engine whose successive decodes are scripted: local agreement commits only what two
    successive decodes share, and what it commits is never heard again."""

    name, agreement = "scripted", 2

    def __init__(self, hypotheses):
        self.hypotheses, self.advanced, self.samples = list(hypotheses), [], 0

    def begin(self):
        self.samples = 0

    def accept(self, samples):
        self.samples += len(samples)

    def partial(self):
        return "x y z"

    def words(self):
        text = self.hypotheses.pop(0) if len(self.hypotheses) > 1 else self.hypotheses[0]
        return [Word(t, 0.1 * i, 0.1 * i + 0.1) for i, t in enumerate(text.split())]

    def advance(self, seconds, committed):
        self.advanced.append((round(seconds, 2), committed))

    def finish(self):
        return []


def test_long_speech_is_committed_by_local_agreement():
    engine = Scripted(["one two tree", "one two three four", "one two three four five six"])
    captioner = Captioner(engine)
    tone = (0.3 * np.sin(np.arange(4 * SAMPLE_RATE) * 0.2)).astype(np.float32)
    audio = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), tone])
    finals = [c for c in captioner.hear(audio, 0.0) if c.kind == "final"]
    assert finals[0].text == "one two"  # "tree" / "three": not agreed yet
    assert engine.advanced[0] == (0.2, "one two")
    assert " ".join(c.text for c in finals).split()[:2] == ["one", "two"]
    assert all(c.emitted - c.end >= captioner.tail_s for c in finals)


class Cached(Scripted):
    """As Scripted, but a decode is seen again until `every` commit checks have passed (as WhisperEngine's words()
    returns its last decode while it is less than partial_every_s behind), and it says which decode it is."""

    def __init__(self, hypotheses, every=2):
        super().__init__(hypotheses)
        self.every, self.calls, self.decodes, self.last = every, 0, 0, []

    def words(self):
        if self.calls % self.every == 0:
            self.last, self.decodes = super().words(), self.decodes + 1
        self.calls += 1
        return self.last


def test_local_agreement_counts_a_new_decode_not_the_same_one_seen_twice():
    tone = (0.3 * np.sin(np.arange(4 * SAMPLE_RATE) * 0.2)).astype(np.float32)
    audio = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), tone])
    hypotheses = ["one two tree four", "one two three four five", "one two three four five six seven"]
    # the same decode seen by two checks: all of it, "tree" from one decode only, is committed
    before = [c for c in Captioner(Cached(hypotheses), agree_new=False).hear(audio, 0.0) if c.kind == "final"]
    assert before[0].text == "one two tree four"
    # two decodes agree: "one two" (the second decode says "three")
    engine = Cached(hypotheses)
    finals = [c for c in Captioner(engine, agree_new=True).hear(audio, 0.0) if c.kind == "final"]
    assert finals[0].text == "one two" and engine.advanced[0] == (0.2, "one two")
    # an engine that does not count its decodes: agreement as before
    assert [c for c in Captioner(Scripted(hypotheses), agree_new=True).hear(audio, 0.0)
            if c.kind == "final"][0].text == "one two"


def test_whisper_counts_its_decodes_and_takes_its_partial_interval():
    engine = make_engine("whisper[every=0.25,beam=1]")
    assert engine.partial_every_s == 0.25 and engine.whisper.decoding.beam == 1 and engine.decodes == 0
    engine.begin()
    engine.accept(np.zeros(SAMPLE_RATE, np.float32))
    engine.words()
    engine.words()  # the same decode: less than 0.25 s of new audio
    assert engine.decodes == 1
    engine.accept(np.zeros(SAMPLE_RATE // 4, np.float32))
    engine.words()
    assert engine.decodes == 2
    with pytest.raises(InputError, match="not a number"):
        make_engine("whisper[every=soon]")


@pytest.mark.skipif(not CLIP.exists(), reason="../shared/data is absent (the real recordings)")
def test_a_partial_shows_the_newest_decode_with_fresh_partials():
    """A commit check's decode (`words`) made since the last partial: with `fresh=1` the next partial is its text
    (no new decode); without, the older text until the next decode is due."""
    from avcall.app.eval.data import load_audio

    audio = load_audio(CLIP)
    for fresh in (False, True):
        engine = make_engine(f"whisper[fresh={int(fresh)}]")
        engine.begin()
        engine.accept(audio[:SAMPLE_RATE])
        first = engine.partial()
        engine.accept(audio[SAMPLE_RATE:2 * SAMPLE_RATE])
        newest = " ".join(w.text for w in engine.words())
        engine.accept(audio[2 * SAMPLE_RATE:2 * SAMPLE_RATE + SAMPLE_RATE // 10])
        assert engine.partial() == (newest if fresh else first) and engine.decodes == 2
        assert newest != first


@pytest.mark.skipif(not CLIP.exists(), reason="../shared/data is absent (the real recordings)")
def test_a_real_recording_is_captioned_with_its_key_words():
    import soundfile

    audio, rate = soundfile.read(CLIP, dtype="float32")
    assert rate == SAMPLE_RATE
    audio = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), audio, np.zeros(SAMPLE_RATE, np.float32)])
    emitted = [c for c, _ in caption(audio, [], make_engine("whisper"))]
    finals = normalise(" ".join(c.text for c in emitted if c.kind == "final"))
    assert {"reports", "north", "people"} <= set(finals), finals
    assert any(c.kind == "partial" for c in emitted)
    assert all(a.start <= b.start for a, b in zip(emitted, emitted[1:]) if a.kind == b.kind == "final")


def test_the_encoder_sees_a_few_window_shapes_not_one_per_hop():
    from avcall.pipelines.asr_whisper import MAX_WINDOW_S, window_frames

    widths = {window_frames(n) for n in range(0, int(MAX_WINDOW_S * 100))}
    assert len(widths) <= 21 and all(w % 100 == 0 for w in widths)  # whole seconds, 10 s to 30 s
    assert all(window_frames(n) >= n + 100 for n in range(0, 2900))  # the audio and a second of padding fit


def test_decoding_options_are_written_and_read_back():
    from avcall.pipelines.asr_whisper import Decoding

    d = Decoding.parse("beam=3,fallback=0.2/0.4,prompt=0,ngram=3")
    assert (d.beam, d.fallback, d.prompt, d.ngram) == (3, (0.2, 0.4), False, 3)
    assert Decoding.parse(d.spec()) == d and Decoding().spec() == "" and Decoding.parse("beam=1").beam == 1
    assert make_engine("whisper[beam=3,prompt=0]").whisper.decoding == Decoding.parse("beam=3,prompt=0")
    with pytest.raises(InputError, match="takes no options"):
        make_engine("pocketsphinx[beam=3]")
    for bad in ("beam", "size=3", "beam=three"):
        with pytest.raises(InputError, match="Whisper decoding"):
            Decoding.parse(bad)


def test_a_loop_is_told_from_speech():
    from avcall.pipelines.asr_whisper import loops

    assert loops([1, 2, 3, 4, 2, 3, 4, 2, 3, 4], "x")  # the same 3 tokens three times in a row
    assert not loops([1, 2, 3, 4, 2, 3, 4, 5], "it was my reports from the north")
    assert loops([1, 2], "the end of " * 20)  # gzip finds it in the text


# two female voices talking over each other (intelligible: speech, not noise); the other real noises have no speech
SPEECH_IN_NOISE = ("EMGSE_babble_two_female_english.wav",)


@pytest.mark.skipif(not (DATA / "noise").exists(), reason="../shared/data is absent (the real recordings)")
def test_no_caption_on_noise_alone():
    """The dev noises without speech, whole and as recorded, through the default captioner: not one word (Whisper
    made up "I'm gonna go to the end of ..." over the dishes and "I'm going to get the first" over the bike)."""
    from avcall.app.eval.data import load_audio, noise_files

    noises = [p for p in noise_files(DATA) if p.name not in SPEECH_IN_NOISE]
    assert len(noises) >= 6
    said = {}
    for path in noises:
        emitted = caption(load_audio(path), [], make_engine("whisper"))
        said[path.name] = [c.text for c, _ in emitted if c.kind == "final"]
    assert not any(said.values()), said
