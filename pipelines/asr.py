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
import threading
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


class RecogniserProcess:
    """The process that runs this process's recognisers of one kind (engine spec, model, language): one per
    process, whatever the number of calls (a worker's calls share it, and the model it loads once).

    A recogniser that holds the GIL while it decodes (PocketSphinx does, about a fifth of the audio's
    duration) starves a live call's other threads: the event loop that moves every frame waits for it, and
    the call falls behind. In a process of its own it decodes on the other core and no call waits for it.
    Its calls' engines are sessions in it, served one request at a time: a decode for one call holds the
    next call's request until it is done (the captioner asks for a partial only for the newest audio, so
    a recogniser shared by more speech than it keeps up with decodes less often rather than falling
    behind). It ends when its last session closes, or when this process goes away (its pipe closes).
    """

    _running: dict[tuple, "RecogniserProcess"] = {}
    _lock = threading.Lock()

    def __init__(self, key: tuple, start_timeout_s: float) -> None:
        context = multiprocessing.get_context("spawn")  # not a fork of a process full of threads
        self.key = key
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_serve_engines, args=(child, *key), name=f"avcall-asr-{key[0]}",
                                       daemon=True)
        self.process.start()
        child.close()
        self.talk = threading.Lock()  # one request (and its answer) at a time
        self.sessions: set[int] = set()
        self._next = 0
        if not self._conn.poll(start_timeout_s):
            self.stop()
            raise InputError(f"--asr {key[0]}: the recogniser did not start within {start_timeout_s:.0f} s")
        self.name, self.agreement, self.resumable = self._answer()

    @classmethod
    def session(cls, spec: str, model_path, language: str, start_timeout_s: float) -> tuple["RecogniserProcess", int]:
        """This process's recogniser of that kind (started now if none runs) and a new session in it."""
        key = (spec, None if model_path is None else str(model_path), language)
        with cls._lock:
            host = cls._running.get(key)
            if host is None or not host.process.is_alive():
                host = cls._running[key] = RecogniserProcess(key, start_timeout_s)
            host._next += 1
            host.sessions.add(host._next)
            host.send(host._next, "open")
            return host, host._next

    @classmethod
    def running(cls) -> dict[str, int]:
        """The recognisers running for this process's calls: sessions by engine spec."""
        with cls._lock:
            return {host.key[0]: len(host.sessions) for host in cls._running.values() if host.process.is_alive()}

    def close_session(self, sid: int) -> None:
        with RecogniserProcess._lock:
            self.sessions.discard(sid)
            last = not self.sessions
            if last and RecogniserProcess._running.get(self.key) is self:
                del RecogniserProcess._running[self.key]
        try:
            self.send(sid, "close")
        except RuntimeError:
            pass
        if last:
            self.stop()

    def stop(self) -> None:
        try:
            self._conn.send((0, "exit", None))
        except (OSError, ValueError):
            pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self._conn.close()

    def send(self, sid: int, method: str, arg=None) -> None:
        with self.talk:
            self._send(sid, method, arg)

    def ask(self, sid: int, method: str, arg=None):
        """A request and its answer (the session's error, if one of its requests failed)."""
        with self.talk:
            self._send(sid, method, arg)
            return self._answer()

    def _send(self, sid: int, method: str, arg) -> None:
        try:
            self._conn.send((sid, method, arg))
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise self._ended() from None

    def _answer(self):
        try:
            kind, value = self._conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            raise self._ended() from None
        if kind == "error":
            if value.startswith("InputError: "):
                raise InputError(value.removeprefix("InputError: "))
            raise RuntimeError(f"the recogniser failed: {value}")
        return value

    def _ended(self) -> RuntimeError:
        self.process.join(1)
        return RuntimeError(f"the recogniser's process ended (exit code {self.process.exitcode})")


class EngineProcess:
    """An engine run in the recogniser process this process's calls share (`RecogniserProcess`), behind the
    same protocol: `accept` and `begin` are sent without waiting; `partial` and `finish` wait for their
    answer."""

    def __init__(self, spec: str = DEFAULT_ENGINE, model_path: str | Path | None = None, language: str = "en",
                 start_timeout_s: float = 60.0) -> None:
        self._host, self._sid = RecogniserProcess.session(spec, model_path, language, start_timeout_s)
        self._process = self._host.process
        self.name, self.agreement, self.resumable = self._host.name, self._host.agreement, self._host.resumable
        self.decodes: int | None = None  # the engine's count of decodes, as of the last `words` (None: unknown)

    def words(self) -> list[Word]:  # only where the engine is resumable (see `resumable`)
        words, self.decodes = self._host.ask(self._sid, "words")
        return [Word(*w) for w in words]

    def advance(self, seconds: float, committed: str) -> None:
        self._host.send(self._sid, "advance", (seconds, committed))

    @property
    def language(self) -> str | None:
        """The engine's language (detected on the first line under "auto"; None until then)."""
        return self._host.ask(self._sid, "language")

    def begin(self) -> None:
        self._host.send(self._sid, "begin")

    def accept(self, samples: np.ndarray) -> None:
        self._host.send(self._sid, "accept", np.asarray(samples, np.float32))

    def partial(self) -> str:
        return self._host.ask(self._sid, "partial")

    def finish(self) -> list[Word]:
        return [Word(*w) for w in self._host.ask(self._sid, "finish")]

    def close(self) -> None:
        if self._host is not None:
            self._host.close_session(self._sid)
            self._host = None


def _serve_engines(conn, spec: str, model_path, language: str = "en") -> None:
    """The child: an engine per session (the first made at once: the answer to the start says whether it
    loads), driven by (session, method, argument) messages; a session's error is the answer to its next
    call that waits for one."""
    try:
        spare = make_engine(spec, model_path, language)
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ok", (spare.name, int(getattr(spare, "agreement", 1)), resumable(spare))))
    engines: dict[int, SpeechEngine] = {}
    failures: dict[int, str] = {}
    while True:
        try:
            sid, method, arg = conn.recv()
        except EOFError:  # the parent went away
            return
        if method == "exit":
            return
        try:
            if method == "open":
                engines[sid], spare = spare or make_engine(spec, model_path, language), None
                continue
            if method == "close":
                engines.pop(sid, None)
                failures.pop(sid, None)
                continue
            if sid in failures and method in ("partial", "finish", "words", "language"):
                conn.send(("error", failures.pop(sid)))
                continue
            engine = engines[sid]
            if method == "begin":
                engine.begin()
            elif method == "accept":
                engine.accept(arg)
            elif method == "advance":
                engine.advance(*arg)
            elif method == "language":
                conn.send(("ok", getattr(engine, "language", None)))
            elif method == "partial":
                conn.send(("ok", engine.partial()))
            elif method in ("finish", "words"):
                words = [(w.text, w.start, w.end) for w in getattr(engine, method)()]
                if method == "words":  # with the decode they came from (the captioner's local agreement)
                    words = (words, getattr(engine, "decodes", None))
                conn.send(("ok", words))
        except Exception as err:  # noqa: BLE001 - every call goes on; the parent hears of it
            if method in ("partial", "finish", "words", "language"):
                conn.send(("error", f"{type(err).__name__}: {err}"))
            else:
                failures[sid] = f"{type(err).__name__}: {err}"
