"""Speech recognition engines for the captioner, behind one small protocol.

An engine decodes one utterance at a time: `begin()`, then `accept(samples)` as audio arrives (16 kHz mono
float32), `partial()` whenever a running hypothesis is wanted, and `finish()` for the final words with times
relative to the utterance's first sample. The captioner decides where utterances start and end.

The default engine is PocketSphinx: its en-us acoustic model, language model and dictionary ship inside the
pip wheel, so nothing is downloaded. Another engine is a configuration change: `--asr module:Class` (and
`--asr-model PATH`, handed to the class as `model_path`) loads any class that implements `SpeechEngine`,
for example an adapter over faster-whisper or whisper.cpp bindings and a model file the user has.

The shipped alternative is "two-pass" (`asr_whisper.py`): PocketSphinx's partials while a person speaks and
Whisper tiny.en's words for the final line. An engine that decodes the whole utterance again for its words (as
Whisper does) may also implement `ResumableEngine`: `words()` for the words so far without ending the
utterance, and `advance(seconds, committed)` to drop the first seconds once the captioner has committed them;
its `agreement` says how many successive hypotheses must agree on a word before long speech is committed
(local agreement: 2 for Whisper, 1 for PocketSphinx, whose word times come from its own search).
"""

from __future__ import annotations

import importlib
import inspect
import multiprocessing
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .errors import InputError
from .frames import Word


@runtime_checkable
class SpeechEngine(Protocol):
    name: str

    def begin(self) -> None:
        """A new utterance starts with the next `accept`."""

    def accept(self, samples: np.ndarray) -> None:
        """More audio of the utterance: 16 kHz mono float32 in [-1, 1]."""

    def partial(self) -> str:
        """The hypothesis so far ("" when there is none yet)."""

    def finish(self) -> list[Word]:
        """End the utterance: its words, times from the utterance's first sample."""


@runtime_checkable
class ResumableEngine(SpeechEngine, Protocol):
    agreement: int

    def words(self) -> list[Word]:
        """The utterance's words so far, times from its first sample; the utterance goes on."""

    def advance(self, seconds: float, committed: str) -> None:
        """Drop the utterance's first `seconds` (committed as `committed`: the context of what follows)."""


def resumable(engine) -> bool:
    return bool(getattr(engine, "resumable", isinstance(engine, ResumableEngine)))


ACCEPT_CHUNK = 400  # samples (25 ms of audio, about 5 ms of decoding: the GIL switch interval)
_FILLER = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\+\+.*\+\+)$")
_VARIANT = re.compile(r"\(\d+\)$")  # "the(2)": the dictionary's second pronunciation


class PocketSphinxEngine:
    """CMU PocketSphinx 5 with the model shipped in its wheel (en-us, 16 kHz)."""

    name = "pocketsphinx"

    def __init__(self, model_path: str | Path | None = None) -> None:
        from pocketsphinx import Decoder

        kwargs = {}
        if model_path is not None:  # a model folder of one's own: hmm/, lm, dict as PocketSphinx lays them out
            model = Path(model_path)
            if not model.is_dir():
                raise InputError(f"--asr-model {model}: not a PocketSphinx model folder")
            kwargs = {"hmm": str(model / "hmm")} if (model / "hmm").is_dir() else {"hmm": str(model)}
        self._decoder = Decoder(loglevel="FATAL", fwdflat=False, bestpath=False, **kwargs)
        self._started = False

    def begin(self) -> None:
        if self._started:
            self._decoder.end_utt()
        self._decoder.start_utt()
        self._started = True

    def accept(self, samples: np.ndarray) -> None:
        pcm = np.clip(np.round(np.asarray(samples, np.float32) * 32767), -32768, 32767).astype(np.int16)
        # process_raw holds the GIL while it decodes (about 0.2 s per second of audio here): in short pieces,
        # so that re-decoding a line's seconds of audio never freezes the call's other threads
        for i in range(0, len(pcm), ACCEPT_CHUNK):
            self._decoder.process_raw(pcm[i:i + ACCEPT_CHUNK].tobytes(), False, False)

    def partial(self) -> str:
        hyp = self._decoder.hyp()
        return " ".join(_clean_words(hyp.hypstr.split())) if hyp is not None else ""

    def finish(self) -> list[Word]:
        if not self._started:
            return []
        self._decoder.end_utt()
        self._started = False
        words = []
        for seg in self._decoder.seg():
            text = _VARIANT.sub("", seg.word)
            if not _FILLER.match(text):
                words.append(Word(text, seg.start_frame / 100.0, (seg.end_frame + 1) / 100.0))
        return words


def _clean_words(words: list[str]) -> list[str]:
    return [_VARIANT.sub("", w) for w in words if not _FILLER.match(_VARIANT.sub("", w))]


ENGINES = {"pocketsphinx": "PocketSphinxEngine", "two-pass": "avcall.pipelines.asr_whisper:TwoPassEngine",
           "whisper": "avcall.pipelines.asr_whisper:WhisperEngine",
           "whisper-base": "avcall.pipelines.asr_whisper:WhisperEngine"}  # (the multilingual base, for any language)
DEFAULT_ENGINE = "whisper"
_OPTIONS = re.compile(r"^([^\[\]]+)\[([^\[\]]*)\]$")  # "whisper[beam=3,prompt=0]": the engine's options


def split_specs(text: str) -> list[str]:
    """A comma-separated list of engine specs whose options may hold commas: "whisper,whisper[beam=3,ngram=3]"
    (and, for `avcall eval captions`, the captioner's options after them in braces: "whisper{tail_s=0.6}")."""
    return [m.group(0) for m in re.finditer(r"[^,\[{]+(?:\[[^\]]*\])?(?:\{[^}]*\})?", text)]


def make_engine(spec: str = DEFAULT_ENGINE, model_path: str | Path | None = None,
                language: str = "en") -> SpeechEngine:
    """An engine by name (one of ENGINES) or by "package.module:Class", with its options in brackets (Whisper's
    decoding: `whisper[beam=3]`, handed to the class as `options`); `model_path` goes to its constructor, and
    `language` (a Whisper language code, or "auto") where it is not English."""
    kwargs: dict = {"model_path": model_path} if model_path is not None else {}
    options = _OPTIONS.match(spec)
    if options:
        spec, kwargs["options"] = options.group(1), options.group(2)
    if spec == "whisper-base":
        kwargs["model"] = "base"
    if language != "en":
        if spec == "pocketsphinx":
            raise InputError(f"--language {language}: PocketSphinx knows English only (use --asr whisper)")
        kwargs["language"] = language
    if spec == "pocketsphinx":
        cls = PocketSphinxEngine
    elif spec in ENGINES:
        module, _, attr = ENGINES[spec].partition(":")
        cls = getattr(importlib.import_module(module), attr)
    elif ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise InputError(f"--asr {spec}: cannot load it ({err})") from None
    else:
        raise InputError(f"--asr {spec!r}: expected one of {', '.join(ENGINES)} or package.module:Class")
    taken = inspect.signature(cls).parameters
    for key in ("options", "language"):
        if key in kwargs and key not in taken:
            raise InputError(f"--asr {spec}: {cls.__name__} takes no {key} ({kwargs[key]!r})")
    engine = cls(**kwargs)
    if not isinstance(engine, SpeechEngine):
        raise InputError(f"--asr {spec}: {cls.__name__} does not implement begin/accept/partial/finish")
    return engine


class EngineProcess:
    """An engine run in a process of its own, behind the same protocol.

    A recogniser that holds the GIL while it decodes (PocketSphinx does, about a fifth of the audio's
    duration) starves a live call's other threads: the event loop that moves every frame waits for it, and
    the call falls behind. In its own process it decodes on the other core and the call never waits for it.
    `accept` and `begin` are sent without waiting; `partial` and `finish` wait for their answer. The child
    ends when it is closed, or when this process goes away (its end of the pipe closes).
    """

    def __init__(self, spec: str = DEFAULT_ENGINE, model_path: str | Path | None = None, language: str = "en",
                 start_timeout_s: float = 60.0) -> None:
        context = multiprocessing.get_context("spawn")  # not a fork of a process full of threads
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve_engine, args=(child, spec, model_path, language),
                                         name=f"avcall-asr-{spec}", daemon=True)
        self._process.start()
        child.close()
        if not self._conn.poll(start_timeout_s):
            self.close()
            raise InputError(f"--asr {spec}: the recogniser did not start within {start_timeout_s:.0f} s")
        self.name, self.agreement, self.resumable = self._answer()
        self.decodes: int | None = None  # the engine's count of decodes, as of the last `words` (None: unknown)

    def words(self) -> list[Word]:  # only where the engine is resumable (see `resumable`)
        self._send("words")
        words, self.decodes = self._answer()
        return [Word(*w) for w in words]

    def advance(self, seconds: float, committed: str) -> None:
        self._send("advance", (seconds, committed))

    @property
    def language(self) -> str | None:
        """The engine's language (detected on the first line under "auto"; None until then)."""
        self._send("language")
        return self._answer()

    def begin(self) -> None:
        self._send("begin")

    def accept(self, samples: np.ndarray) -> None:
        self._send("accept", np.asarray(samples, np.float32))

    def partial(self) -> str:
        self._send("partial")
        return self._answer()

    def finish(self) -> list[Word]:
        self._send("finish")
        return [Word(*w) for w in self._answer()]

    def close(self) -> None:
        try:
            self._conn.send(("close", None))
        except (OSError, ValueError):
            pass
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()

    def _send(self, method: str, arg=None) -> None:
        try:
            self._conn.send((method, arg))
        except (BrokenPipeError, ConnectionResetError):
            raise self._ended() from None

    def _answer(self):
        try:
            kind, value = self._conn.recv()
        except (EOFError, ConnectionResetError):
            raise self._ended() from None
        if kind == "error":
            if value.startswith("InputError: "):
                raise InputError(value.removeprefix("InputError: "))
            raise RuntimeError(f"the recogniser failed: {value}")
        return value

    def _ended(self) -> RuntimeError:
        self._process.join(1)
        return RuntimeError(f"the recogniser's process ended (exit code {self._process.exitcode})")


def _serve_engine(conn, spec: str, model_path, language: str = "en") -> None:
    """The child: one engine, driven by (method, argument) messages; an error is the answer to the next
    call that waits for one."""
    try:
        engine = make_engine(spec, model_path, language)
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ok", (engine.name, int(getattr(engine, "agreement", 1)), resumable(engine))))
    failure = None
    while True:
        try:
            method, arg = conn.recv()
        except EOFError:  # the parent went away
            return
        if method == "close":
            return
        try:
            if method == "begin":
                engine.begin()
            elif method == "accept":
                engine.accept(arg)
            elif method == "partial":
                conn.send(("error", failure) if failure else ("ok", engine.partial()))
                failure = None
            elif method in ("finish", "words"):
                words = [(w.text, w.start, w.end) for w in getattr(engine, method)()]
                if method == "words":  # with the decode they came from (the captioner's local agreement)
                    words = (words, getattr(engine, "decodes", None))
                conn.send(("error", failure) if failure else ("ok", words))
                failure = None
            elif method == "advance":
                engine.advance(*arg)
            elif method == "language":
                conn.send(("ok", getattr(engine, "language", None)))
        except Exception as err:  # noqa: BLE001 - every call goes on; the parent hears of it
            failure = f"{type(err).__name__}: {err}"
            if method in ("partial", "finish", "words"):
                conn.send(("error", failure))
                failure = None
