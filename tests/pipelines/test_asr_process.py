"""The recogniser in a process of its own (live calls): the same captions as on a thread, none of the decoding
on the calling process, its errors raised in the caller, and no process left once the call ends."""

from __future__ import annotations

import asyncio
import multiprocessing
import time

import pytest

from avcall.app.eval.captions import caption
from avcall.pipelines.asr import EngineProcess, PocketSphinxEngine
from avcall.pipelines.errors import InputError
from avcall.pipelines.frames import SAMPLE_RATE, AudioFrame, Event
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.stages.captioner import Captioner
from tests.pipelines.test_captioner import FIRST, SECOND, two_sentences  # noqa: F401 - a fixture
from tests.pipelines.test_sinks import Frames


def finals(emitted) -> list[tuple[str, float, float]]:
    return [(c.text, round(c.start, 2), round(c.end, 2)) for c, _ in emitted if c.kind == "final"]


def test_same_captions_as_on_a_thread_and_the_decoding_costs_the_caller_nothing(two_sentences):  # noqa: F811
    audio, _ = two_sentences
    on_thread = finals(caption(audio, [], PocketSphinxEngine()))
    engine = EngineProcess("pocketsphinx")
    try:
        apart = finals(caption(audio, [], engine))
        engine.begin()
        cpu = time.process_time()
        engine.accept(audio)
        heard = engine.partial()  # waits for the child to have decoded all of it
        caller_cpu = time.process_time() - cpu
        engine.finish()
    finally:
        engine.close()
    assert apart == on_thread and len(apart) >= 2
    assert heard
    seconds = len(audio) / SAMPLE_RATE  # PocketSphinx needs about a fifth of that on this machine's core
    assert caller_cpu < 0.02 * seconds, f"the caller spent {caller_cpu:.2f} s of CPU on {seconds:.1f} s of audio"
    assert not engine._process.is_alive()


def test_the_calls_of_a_process_share_one_recogniser_process(two_sentences):  # noqa: F811
    """Two calls' engines are sessions in one recogniser process (one model loaded); their utterances,
    interleaved hop by hop, are decoded apart as two engines of their own decode them; the process ends with
    the last session."""
    from avcall.pipelines.asr import RecogniserProcess

    audio, _ = two_sentences
    first, second = EngineProcess("pocketsphinx"), EngineProcess("pocketsphinx")
    try:
        assert first._process.pid == second._process.pid
        assert RecogniserProcess.running() == {"pocketsphinx": 2}
        backwards = audio[::-1].copy()  # another "voice": what PocketSphinx makes of it is its own
        first.begin()
        second.begin()
        for i in range(0, len(audio), 1600):  # 0.1 s at a time, one call then the other
            first.accept(audio[i:i + 1600])
            second.accept(backwards[i:i + 1600])
        heard = [" ".join(w.text for w in first.finish()), " ".join(w.text for w in second.finish())]
        references = []
        for clip, got in ((audio, heard[0]), (backwards, heard[1])):  # each as an engine of its own hears it
            references.append(PocketSphinxEngine())
            references[-1].begin()
            for i in range(0, len(clip), 1600):
                references[-1].accept(clip[i:i + 1600])
            assert got == " ".join(w.text for w in references[-1].finish())
        assert heard[0]
        # and the session goes on, line after line, as that engine does (PocketSphinx adapts to what it heard)
        assert finals(caption(audio, [], first)) == finals(caption(audio, [], references[0]))
    finally:
        first.close()
        assert second._process.is_alive() and RecogniserProcess.running() == {"pocketsphinx": 1}
        second.close()
    assert not second._process.is_alive() and RecogniserProcess.running() == {}


def test_errors_of_the_child_are_raised_in_the_caller():
    with pytest.raises(InputError, match="cannot load it"):
        EngineProcess("no_such_package.asr:Engine")
    engine = EngineProcess("pocketsphinx")
    engine._process.kill()
    engine._process.join(10)
    with pytest.raises(RuntimeError, match="process ended"):
        engine.partial()
    engine.close()


def test_a_live_captioner_leaves_no_process_behind(two_sentences):  # noqa: F811
    audio, _ = two_sentences
    hops = [AudioFrame(pts=i / 100, samples=audio[i * 160:(i + 1) * 160]) for i in range(len(audio) // 160)]
    captioner = Captioner(own_process=True)
    out = []
    asyncio.run(Pipeline([Frames(hops)], [captioner], live=False, on_output=out.append).run())
    words = " ".join(f.data["text"] for f in out if isinstance(f, Event) and f.data["kind"] == "final").split()
    assert len(set(words) & set(f"{FIRST} {SECOND}".split())) >= 5, words
    assert captioner.engine is None  # closed with the run
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("avcall-asr")]
