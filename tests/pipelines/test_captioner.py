"""Live captions: the PocketSphinx engine, the Captioner's lines and latency, the caption files, a plugged-in
engine, and `avcall process --captions` end to end (on speech the project makes with flite)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import srt
import webvtt

from avcall.app.eval.captions import caption, score_clip
from avcall.app.eval.metrics import edit_alignment
from avcall.models.data.align import normalise
from avcall.pipelines.asr import PocketSphinxEngine, make_engine
from avcall.pipelines.errors import InputError
from avcall.pipelines.frames import SAMPLE_RATE, Caption, Event, LipFeatures, VideoFrame, Word
from avcall.pipelines.sinks.captions import CaptionSink, cues, srt as to_srt, webvtt as to_webvtt, wrap
from avcall.pipelines.stages.caption_burner import CaptionBurner
from avcall.pipelines.stages.captioner import VoiceActivity

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (scripts/setup.sh)")
FIRST, SECOND = "please call me back tomorrow morning", "the meeting starts at nine"


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


@pytest.fixture(scope="module")
def two_sentences() -> tuple[np.ndarray, float]:
    """0.5 s silence, FIRST, 1 s silence, SECOND, 0.5 s silence (flite's awb voice); and where SECOND starts."""
    from avcall.models.data.tts import flite

    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (scripts/setup.sh)")
    a, b = flite("awb", FIRST).audio, flite("awb", SECOND).audio
    audio = np.concatenate([silence(0.5), a, silence(1.0), b, silence(0.5)])
    return audio, (len(audio) - len(b)) / SAMPLE_RATE - 0.5


def recognised(captions) -> list[str]:
    return normalise(" ".join(c.text for c in captions if c.kind == "final"))


def test_pocketsphinx_hears_the_words(two_sentences):
    audio, _ = two_sentences
    engine = PocketSphinxEngine()
    engine.begin()
    engine.accept(audio)
    partial = engine.partial()
    words = engine.finish()
    assert partial
    text = [w.text for w in words]
    errors, _ = edit_alignment(normalise(f"{FIRST} {SECOND}"), text)
    assert errors <= 4, text
    assert all(a.end <= b.start + 1e-6 for a, b in zip(words, words[1:]))
    assert words[0].start > 0.3 and words[-1].end < len(audio) / SAMPLE_RATE


def test_lines_close_at_the_pause_and_times_are_on_the_session_clock(two_sentences):
    audio, second_at = two_sentences
    emitted = [c for c, _ in caption(audio, [], make_engine())]
    finals = [c for c in emitted if c.kind == "final"]
    assert {c.line for c in finals} == {1, 2}  # two spoken lines, split at the 1 s pause
    first = [c for c in finals if c.line == 1]
    second = [c for c in finals if c.line == 2]
    assert first[-1].end < second_at < second[0].start + 0.3
    errors, _ = edit_alignment(normalise(f"{FIRST} {SECOND}"), recognised(emitted))
    assert errors <= 4
    # partials come while the line is spoken, before its final; finals come in time order
    partials = [c for c in emitted if c.kind == "partial" and c.line == 1]
    assert partials and partials[0].emitted < first[0].emitted
    assert [c.emitted for c in emitted] == sorted(c.emitted for c in emitted)
    # the same clip 3 s later on the session clock: every time moves by 3 s
    later = [c for c, _ in caption(np.concatenate([silence(3.0), audio]), [], make_engine()) if c.kind == "final"]
    # the same words (a decode's punctuation may differ: "morning the meeting" / "morning. The meeting")
    assert normalise(" ".join(c.text for c in later)) == normalise(" ".join(c.text for c in finals))
    assert np.allclose([later[0].start, later[-1].end], [finals[0].start + 3.0, finals[-1].end + 3.0], atol=0.05)


def test_finals_keep_coming_during_long_speech(two_sentences):
    """Without a pause, a long line is committed in pieces: no word waits for the end of the line."""
    audio, _ = two_sentences
    from avcall.models.data.tts import flite

    long_line = flite("awb", "and after that we will look at the numbers for the third quarter together").audio
    emitted = [c for c, _ in caption(np.concatenate([silence(0.5), long_line, silence(0.5)]), [], make_engine())]
    finals = [c for c in emitted if c.kind == "final"]
    assert len(finals) >= 2 and len({c.line for c in finals}) == 1
    assert finals[0].emitted < 0.5 + len(long_line) / SAMPLE_RATE - 0.8


def test_a_face_with_still_lips_is_not_speaking(two_sentences):
    """The voice is heard, but the face in view keeps its mouth still: it is someone else talking."""
    audio, _ = two_sentences
    still = [LipFeatures(pts=i / 25, present=True, confidence=1.0, opening=0.05, width=1.0)
             for i in range(int(len(audio) / SAMPLE_RATE * 25))]
    assert not [c for c, _ in caption(audio, still, make_engine()) if c.kind == "final"]
    moving = [LipFeatures(pts=f.pts, present=True, confidence=1.0, opening=0.05 + 0.03 * (i % 3), width=1.0)
              for i, f in enumerate(still)]
    assert recognised(c for c, _ in caption(audio, moving, make_engine()))
    absent = [LipFeatures(pts=f.pts, present=False, confidence=0.0) for f in still]  # no face: the voice decides
    assert recognised(c for c, _ in caption(audio, absent, make_engine()))


def test_voice_activity_follows_the_noise_floor():
    rng = np.random.default_rng(0)
    vad = VoiceActivity()
    noise = lambda level: (level * rng.standard_normal(160)).astype(np.float32)  # noqa: E731
    decisions = [vad.audio(noise(0.01), i * 0.01) for i in range(200)]
    assert not any(decisions[20:])  # steady noise, however loud, is not speech
    assert vad.audio(noise(0.05), 2.0)  # 14 dB over it is
    quiet = VoiceActivity()
    assert not quiet.audio(noise(1e-4), 0.0) and not quiet.audio(noise(1e-3), 0.01)  # under -55 dBFS: never


def test_latency_and_wer_scoring():
    from avcall.pipelines.face.phonemes import Word as TimedWord

    timed = [TimedWord("hello", 0.0, 0.4), TimedWord("there", 0.5, 0.9)]
    emitted = [(Caption("partial", "hello", 0.0, 0.6, 0.6, 1), 0.01),
               (Caption("partial", "hello there", 0.0, 1.2, 1.2, 1), 0.01),
               (Caption("final", "hello there", 0.0, 0.9, 1.5, 1, (Word("hello", 0, 0.4), Word("there", 0.5, 0.9))),
                0.02)]
    row = score_clip("Hello, there!", timed, emitted, extra_latency=0.02)
    assert row["errors"] == 0 and row["wer"] == 0
    assert row["partial_latencies"] == pytest.approx([0.6 + 0.03 - 0.4, 1.2 + 0.03 - 0.9])
    assert row["final_latencies"] == pytest.approx([1.5 + 0.04 - 0.4, 1.5 + 0.04 - 0.9])
    assert edit_alignment("a b c d".split(), "a x c".split())[0] == 2
    assert score_clip("twenty two", [], [(Caption("final", "twenty two", 0, 1, 1, 1), 0)], 0)["wer"] == 0
    assert score_clip("22 cats", [], [(Caption("final", "twenty two cats", 0, 1, 1, 1), 0)], 0)["wer"] == 0


def test_caption_files_parse_in_order_without_overlap(tmp_path):
    words = lambda *spec: tuple(Word(t, s, e) for t, s, e in spec)  # noqa: E731
    finals = [
        Caption("final", "second line", 2.0, 3.1, 3.5, 2, words(("second", 2.0, 2.5), ("line", 2.6, 3.1))),
        Caption("final", "first", 0.5, 1.0, 1.4, 1, words(("first", 0.5, 1.0))),
        Caption("final", "part", 1.1, 2.2, 2.4, 1, words(("part", 1.1, 2.2))),  # runs into the next line
        Caption("partial", "ignored", 0.0, 9.0, 9.0, 3),
        Caption("final", "x" * 50 + " " + "y" * 50, 4.0, 5.0, 5.2, 3, words(("x" * 50, 4.0, 4.4), ("y" * 50, 4.5, 5.0))),
    ]
    sink = CaptionSink(tmp_path)
    for c in finals:
        asyncio.run(sink.process(Event(pts=c.emitted, kind="caption", data=c.to_json())))
    asyncio.run(sink.flush())
    vtt = webvtt.read(str(tmp_path / "captions.vtt"))
    assert [c.text for c in vtt] == ["first part", "second line", "x" * 42 + "\n" + "x" * 8,
                                     "y" * 42 + "\n" + "y" * 8]
    subs = list(srt.parse((tmp_path / "captions.srt").read_text()))
    assert [s.content for s in subs] == [c.text for c in vtt]
    starts = [c.start_in_seconds for c in vtt]
    assert starts == sorted(starts)
    assert all(a.end_in_seconds <= b.start_in_seconds for a, b in zip(vtt, vtt[1:]))
    assert all(a.end <= b.start for a, b in zip(subs, subs[1:]))
    assert to_webvtt([]) == "WEBVTT\n" and to_srt([]) == "" and cues([]) == []


def test_a_long_utterance_is_cued_two_lines_of_42_at_most(tmp_path):
    """A minute of speech without a pause (many finals of one spoken line, words of every length): the .vtt
    (webvtt-py) and the .srt (srt) have cues of at most two lines of 42 characters, in time order, never
    overlapping, and together every word in order."""
    rng = np.random.default_rng(3)
    vocabulary = "a an the of meeting budget tomorrow morning please call back friday international " \
                 "responsibilities characteristically incomprehensibilities I".split()
    spoken, finals, t = [], [], 0.0
    for piece in range(20):  # commits of one long line, as the captioner sends them
        words = []
        for _ in range(int(rng.integers(3, 9))):
            text = str(rng.choice(vocabulary))
            length = 0.08 * len(text) + 0.1
            words.append(Word(text, t, t + length))
            t += length + float(rng.uniform(0.0, 0.15))
        spoken += [w.text for w in words]
        finals.append(Caption("final", " ".join(w.text for w in words), words[0].start, words[-1].end,
                              words[-1].end + 0.5, 1, tuple(words)))
    sink = CaptionSink(tmp_path)
    for c in finals:
        asyncio.run(sink.process(Event(pts=c.emitted, kind="caption", data=c.to_json())))
    asyncio.run(sink.flush())
    vtt = list(webvtt.read(str(tmp_path / "captions.vtt")))
    subs = list(srt.parse((tmp_path / "captions.srt").read_text()))
    assert len(vtt) == len(subs) > 10
    for cue, sub in zip(vtt, subs):
        lines = cue.text.split("\n")
        assert 1 <= len(lines) <= 2 and all(0 < len(x) <= 42 for x in lines), lines
        assert sub.content == cue.text
        assert cue.start_in_seconds < cue.end_in_seconds
    assert all(a.end_in_seconds <= b.start_in_seconds for a, b in zip(vtt, vtt[1:]))
    assert all(a.end <= b.start for a, b in zip(subs, subs[1:]))
    assert " ".join(c.text.replace("\n", " ") for c in vtt).split() == spoken
    # a cue is full before the next begins: its words and the next one's first would not fit two lines
    for a, b in zip(vtt, vtt[1:]):
        assert len(wrap(a.text.split() + b.text.split()[:1])) > 2


def test_a_second_engine_is_a_configuration_change(monkeypatch):
    """Any class with begin/accept/partial/finish plugs in by "module:Class" and gets the model path."""

    class Counting:
        name = "counting"

        def __init__(self, model_path=None):
            self.model_path, self.samples = model_path, 0

        def begin(self):
            self.samples = 0

        def accept(self, samples):
            self.samples += len(samples)

        def partial(self):
            return "talking" if self.samples else ""

        def finish(self):
            return [Word("talking", 0.0, self.samples / SAMPLE_RATE)]

    module = types.ModuleType("my_asr")
    module.Counting = Counting
    monkeypatch.setitem(sys.modules, "my_asr", module)
    engine = make_engine("my_asr:Counting", "/models/mine.bin")
    assert engine.model_path == "/models/mine.bin"
    tone = (0.3 * np.sin(np.arange(2 * SAMPLE_RATE) * 0.2)).astype(np.float32)
    emitted = [c for c, _ in caption(np.concatenate([silence(0.5), tone, silence(1.0)]), [], engine)]
    assert [c.text for c in emitted if c.kind == "final"] == ["talking"]
    with pytest.raises(InputError, match="cannot load"):
        make_engine("no_such_module:Engine")
    with pytest.raises(InputError, match="expected one of"):
        make_engine("no-such-engine")
    with pytest.raises(InputError, match="does not implement"):
        make_engine("builtins:object")


def test_burned_captions_show_the_line_of_the_moment():
    burner = CaptionBurner()
    image = np.full((120, 160, 3), 128, np.uint8)

    async def run():
        out = []
        out += await burner.process(VideoFrame(pts=0.0, image=image))
        c = Caption("final", "hello", 0.1, 0.4, 0.5, 1, (Word("hello", 0.1, 0.4),))
        out += await burner.process(Event(pts=0.5, kind="caption", data=c.to_json()))
        out += await burner.process(VideoFrame(pts=1.0, image=image))
        out += await burner.process(VideoFrame(pts=9.0, image=image))
        out += await burner.flush()
        return [f for f in out if isinstance(f, VideoFrame)]

    frames = asyncio.run(run())
    assert [f.pts for f in frames] == [0.0, 1.0, 9.0]
    assert np.array_equal(frames[0].image, image)  # before the caption
    assert not np.array_equal(frames[1].image, image)  # while it is shown
    assert np.array_equal(frames[2].image, image)  # long after it ended


@needs_flite
def test_process_writes_caption_files_and_burns_them(tmp_path):
    from avcall.app.cli import main
    from avcall.models.data.portrait import write_talking_portrait

    clip = tmp_path / "talk.mp4"
    assert write_talking_portrait(clip, "please call me back tomorrow morning")
    out = tmp_path / "out"
    assert main(["process", str(clip), "-o", str(out), "--burn-captions", "-q"]) == 0
    vtt = webvtt.read(str(out / "captions.vtt"))
    heard = normalise(" ".join(c.text for c in vtt))
    assert edit_alignment(normalise(FIRST), heard)[0] <= 3, heard
    assert list(srt.parse((out / "captions.srt").read_text()))
    assert not list(Path(out).glob(".avcall-partial-*"))


def test_a_slow_recogniser_leaves_one_batch_behind_and_skips_the_oldest_audio_live():
    """Live, hops waiting for a recogniser that cannot keep up go into one batch (not a job per hop), and
    audio waiting past max_backlog_s is skipped, oldest first, and counted; what is heard is in order."""
    import time

    from avcall.pipelines.frames import AudioFrame
    from avcall.pipelines.stages.captioner import Captioner
    from avcall.pipelines.telemetry import Incidents

    class Slow:
        name = "slow"

        def __init__(self):
            self.heard = []

        def begin(self):
            pass

        def accept(self, samples):
            time.sleep(0.002)
            self.heard.append(len(samples))

        def partial(self):
            return ""

        def finish(self):
            return []

    engine = Slow()
    stage = Captioner(engine, max_backlog_s=0.5)
    stage.incidents = Incidents()
    tone = (0.3 * np.sin(np.arange(SAMPLE_RATE) * 0.2)).astype(np.float32)

    async def run():
        await stage.start()
        slow = stage.hear
        stage.hear = lambda samples, pts, ask=True: (time.sleep(0.05), slow(samples, pts, ask))[1]  # 5x too slow
        for k in range(300):  # 3 s of hops arriving at once
            await stage.process(AudioFrame(pts=k / 100, samples=tone[:160]))
        pending = len(stage._pending)
        await stage.flush()
        stage.shutdown_worker()
        return pending

    pending = asyncio.run(run())
    assert pending <= 3  # a batch in work and one growing behind it, not 300 jobs
    skipped = stage.incidents.summary()["counts"]["captions_skipped_samples"]
    assert skipped >= (300 - 50 - 1) * 160  # at most 0.5 s waited (and the hop in work): the rest was skipped


def test_live_a_recogniser_behind_is_asked_once_a_batch():
    """Live, the running words are asked for over a batch's newest audio only: audio that waited for the
    recogniser (a stalled machine, one recogniser process for several calls' speech) is decoded once for
    all of it, not every 0.3 s of it, so the recogniser catches up; the line still ends at its pause, with
    its words. Offline (no backlog limit) every hop is asked as before: the captions do not depend on how
    the threads ran."""
    from avcall.pipelines.frames import AudioFrame, Word
    from avcall.pipelines.stages.captioner import Captioner

    class Counting:
        name = "counting"

        def __init__(self):
            self.partials, self.samples = 0, 0

        def begin(self):
            pass

        def accept(self, samples):
            self.samples += len(samples)

        def partial(self):
            self.partials += 1
            return f"word{self.partials}"

        def finish(self):
            return [Word("done", 0.0, 0.5)]

    voice = (0.3 * np.sin(np.arange(SAMPLE_RATE) * 0.2)).astype(np.float32)
    quiet = (1e-4 * np.random.default_rng(0).standard_normal(160)).astype(np.float32)
    hops = [quiet] * 50 + [voice[:160]] * 300 + [quiet] * 60  # 3 s of voice between quiet, its floor

    async def run(stage):
        await stage.start()
        out = []
        for k, samples in enumerate(hops):  # all at once: they wait in one batch
            out += await stage.process(AudioFrame(pts=k / 100, samples=samples))
        out += await stage.flush()
        stage.shutdown_worker()
        return [e.data["text"] for e in out if isinstance(e, Event) and e.data["kind"] == "final"]

    for backlog, most, least in ((10.0, 1, 0), (None, 11, 9)):
        engine = Counting()
        finals = asyncio.run(run(Captioner(engine, max_backlog_s=backlog, pause_s=0.3)))
        assert finals == ["done"] and engine.samples >= 300 * 160  # the voice heard, the line closed
        assert least <= engine.partials <= most, (backlog, engine.partials)  # offline: every 0.3 s of 3 s
