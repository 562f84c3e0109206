"""Phone and word timing of real speech: PocketSphinx forced alignment of a transcript, or recognition first
when there is none.

    align(audio, text)      the transcript's words and phones, timed   (method "align:pocketsphinx")
    recognise(audio)        PocketSphinx's own words (its LM decode), then aligned to them
                            (method "recognise+align:pocketsphinx")
    timing_for(audio, text) align when there is a transcript, else recognise

Audio is 16 kHz mono float; times are seconds from the start of `audio`. The phones (the project's set, see
phonemes.py; silences are "sil") cover the audio without gaps: the first starts at 0 with "sil", the last ends at
the audio's end. Nothing here raises on odd input (silence, a few samples, text that is not what was said):
a Timing always comes back, and its `method` says how it was made:

    align:pocketsphinx                      forced alignment of the transcript
    ...+g2p:espeak / +g2p:letters           some words were not in the dictionary; their pronunciation
                                            was guessed by espeak-ng (or by letter rules without it)
    recognise+align:pocketsphinx            no transcript: LM decode, then alignment to the hypothesis
    recognise+align:pocketsphinx+mismatch   the transcript did not fit the audio (see below): what
                                            PocketSphinx heard instead, aligned (words are what it heard)
    align:even-spread:<why>                 the text's phones spread evenly over the voiced span found by
                                            an energy detector: why = too-short (fewer frames than the
                                            text's phones need), failed or mismatch (and recognition found
                                            nothing either)
    recognise:pocketsphinx+even-spread      recognised words, each one's phones spread over its decoded span
                                            (when aligning to the hypothesis fails)
    align:silent / recognise:silent         no speech found: one "sil" over the audio
    align:empty-text                        the text has no words: one "sil"

A transcript "does not fit" when alignment fails (no path through the text survives the beams), or when its
acoustic score per frame is far below that of an unconstrained phone loop over the same audio (the phones of a
mismatched text are forced onto sounds they do not match). Phone times are PocketSphinx's 10 ms frames (see
OFFSET_S); the first and last speech phones are then held to the voiced span an energy detector finds, since
the aligner tends to let them run into the silence around an utterance. One Decoder is made per process
(lazily, ~0.3 s) and reused; this module is not thread-safe.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import unicodedata

import numpy as np

from avcall.pipelines.face.phonemes import SILENCE, Phone, Timing, Word, arpabet
from avcall.pipelines.frames import SAMPLE_RATE

FRAME_S = 0.01  # PocketSphinx's frame rate is 100 per second
# A phone that starts at frame i starts between the windows of frames i-1 and i. PocketSphinx frame i covers
# samples [160 i, 160 i + 410), centred at 10 i + 12.8 ms; the boundary between two frame centres is 7.8 ms
# after 10 i ms.
OFFSET_S = 0.0078
METHOD_ALIGN = "align:pocketsphinx"
METHOD_RECOGNISE = "recognise+align:pocketsphinx"

# A transcript fits the audio when its forced alignment's acoustic score is at most this much per frame (in
# PocketSphinx's score units) below that of an unconstrained phone loop over the same audio. Measured on the
# 11 transcribed real clips of ../shared/data/speech: right transcripts 8-17 (19-25 with white noise at
# 10 dB SNR), flite speech under 19; another clip's transcript 38-68 when alignment succeeds at all, half the
# words wrong 23-55.
MISMATCH_PER_FRAME = 35.0
MIN_PHONE_FRAMES = 3  # each phone HMM has 3 emitting states and no skips
EDGE_MARGIN_S = 0.01  # speech is taken to end this long after the energy detector last hears it

BEAM, WORD_BEAM = 1e-80, 1e-60

_decoder = None
_searches: set[str] = set()  # searches added to the current _decoder


def _get_decoder():
    """The process's one Decoder: en-us acoustic model, its dictionary and LM (loaded once, ~0.3 s)."""
    global _decoder
    if _decoder is None:
        from pocketsphinx import Decoder

        # bestpath=False: the alignment search needs it (PocketSphinx's own alignment test says so).
        # Beams wider than the defaults (1e-48, 7e-29, 1e-48): with them forced alignment of noisy speech
        # (5 dB SNR) fails on 1 of 11 real clips instead of 6; the LM decode gets slower (real-time factor
        # about 0.2 -> 0.4 here) and no worse.
        _decoder = Decoder(loglevel="FATAL", bestpath=False, beam=BEAM, pbeam=BEAM, wbeam=WORD_BEAM)
        _searches.clear()
    return _decoder


# ---------------------------------------------------------------------------------------------------------
# Transcripts: normalisation, numbers spelled out


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals ", "#": " number "}
_CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros"}


def number_words(n: int) -> list[str]:
    """123 -> one hundred twenty three (American style, no "and")."""
    if n < 0:
        return ["minus", *number_words(-n)]
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (number_words(n % 100) if n % 100 else [])
    for value, name in _SCALES:
        if n >= value:
            if n // value >= 1000 and value == _SCALES[0][0]:
                return [_ONES[d] for d in map(int, str(n))]  # beyond trillions: digit by digit
            return number_words(n // value) + [name] + (number_words(n % value) if n % value else [])
    raise AssertionError(n)


def _year_words(n: int) -> list[str]:
    """1984 -> nineteen eighty four; 1900 -> nineteen hundred."""
    hi, lo = divmod(n, 100)
    if lo == 0:
        return number_words(hi) + ["hundred"]
    return number_words(hi) + (["oh", _ONES[lo]] if lo < 10 else number_words(lo))


def _ordinal(words: list[str]) -> list[str]:
    last = words[-1]
    if last in _ORDINAL:
        last = _ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return words[:-1] + [last]


def _spell_number(match: re.Match) -> str:
    whole, frac, suffix = match.group(1), match.group(2), (match.group(3) or "").lower()
    digits = whole.replace(",", "")
    n = int(digits)
    if suffix in ("st", "nd", "rd", "th"):
        words = _ordinal(number_words(n))
    elif "," not in whole and len(digits) == 4 and 1100 <= n <= 1999 and not frac:
        words = _year_words(n)  # years: the common case of a four-digit number in speech
    else:
        words = number_words(n) if len(digits) <= 15 else [_ONES[int(d)] for d in digits]
    if frac:
        words += ["point"] + [_ONES[int(d)] for d in frac[1:]]
    if suffix == "s":  # 1990s -> nineteen nineties
        last = words[-1]
        words[-1] = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return " " + " ".join(words) + " "


def normalise(text: str) -> list[str]:
    """A transcript as the dictionary's words: lower case, no punctuation, numbers spelled out, apostrophes
    kept inside words ("DON'T" -> "don't"), hyphens and slashes split words."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    for symbol, name in _CURRENCY.items():
        text = re.sub(re.escape(symbol) + r"\s*(\d[\d,]*(?:\.\d+)?)", r"\1 " + name, text)
    for symbol, name in _SYMBOLS.items():
        text = text.replace(symbol, name)
    text = re.sub(r"(?<=[A-Za-z])(?=\d)", " ", text)
    text = re.sub(r"(?<=\d)(?!(?:st|nd|rd|th|s)\b)(?=[A-Za-z])", " ", text, flags=re.IGNORECASE)
    text = re.sub(r"(\d+(?:,\d{3})*|\d+)(\.\d+)?(st|nd|rd|th|s)?\b", _spell_number, text)
    words = []
    for token in re.split(r"[^a-z']+", text.lower()):
        token = token.strip("'")
        if token:
            words.append(token)
    return words


# ---------------------------------------------------------------------------------------------------------
# Pronunciations: the dictionary, espeak-ng for the rest, letter rules as the last resort


# espeak-ng's English phoneme mnemonics (`espeak-ng -x`), longest first, -> PocketSphinx phones.
_ESPEAK = {
    "aI@": "AY ER", "aI3": "AY ER", "aU@": "AW ER", "i@3": "IH R", "U@r": "UH R",
    "tS": "CH", "dZ": "JH", "n-": "N", "l-": "L", "m-": "M", "r-": "R", "t#": "T", "d#": "D",
    "aI": "AY", "aU": "AW", "eI": "EY", "oU": "OW", "OI": "OY", "i@": "IH R", "e@": "EH R", "O@": "AO R",
    "A@": "AA R", "o@": "AO R", "U@": "UH R", "3:": "ER", "A:": "AA", "O:": "AO", "i:": "IY", "u:": "UW",
    "@L": "AH L", "@2": "AH", "@5": "AH", "I2": "IH", "I#": "IH", "a#": "AH", "aa": "AE", "O2": "AO",
    "e#": "EH", "0": "AA", "3": "ER", "@": "AH", "a": "AE", "A": "AA", "E": "EH", "I": "IH", "i": "IY",
    "O": "AO", "o": "OW", "U": "UH", "u": "UW", "V": "AH", "e": "EH",
    "T": "TH", "D": "DH", "S": "SH", "Z": "ZH", "N": "NG", "j": "Y", "h": "HH", "?": "T", "x": "K", "C": "HH",
    "b": "B", "d": "D", "f": "F", "g": "G", "k": "K", "l": "L", "m": "M", "n": "N", "p": "P", "r": "R",
    "s": "S", "t": "T", "v": "V", "w": "W", "z": "Z", "L": "L",
}
_ESPEAK_KEYS = sorted(_ESPEAK, key=len, reverse=True)


def espeak_to_arpabet(mnemonics: str) -> list[str]:
    """`blo@pt'eIstIk` -> B L OW AH P T EY S T IH K (PocketSphinx's upper-case phones). Stress, length,
    syllable and pause marks are dropped; symbols not in the table are skipped."""
    s = re.sub(r"[',%=_|;!]", "", mnemonics)
    out: list[str] = []
    i = 0
    while i < len(s):
        if s[i].isspace() or s[i] in ":-#":
            i += 1
            continue
        for key in _ESPEAK_KEYS:
            if s.startswith(key, i):
                out += _ESPEAK[key].split()
                i += len(key)
                break
        else:
            i += 1
    return out


@functools.lru_cache(maxsize=4096)
def _espeak(word: str) -> tuple[str, ...] | None:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return None
    try:
        run = subprocess.run([exe, "-q", "-x", "-v", "en-us", word], capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    phones = espeak_to_arpabet(run.stdout) if run.returncode == 0 else []
    return tuple(phones) or None


_LETTER_RULES = sorted({
    "tch": "CH", "sch": "S K", "igh": "AY", "ch": "CH", "sh": "SH", "th": "TH", "ph": "F", "ng": "NG",
    "ck": "K", "qu": "K W", "wh": "W", "gh": "G", "kn": "N", "wr": "R", "ee": "IY", "ea": "IY", "oo": "UW",
    "ai": "EY", "ay": "EY", "oa": "OW", "ou": "AW", "ow": "OW", "oi": "OY", "oy": "OY", "au": "AO", "aw": "AO",
    "er": "ER", "ir": "ER", "ur": "ER", "ar": "AA R", "or": "AO R", "ie": "IY", "ey": "EY",
    "a": "AE", "b": "B", "c": "K", "d": "D", "e": "EH", "f": "F", "g": "G", "h": "HH", "i": "IH", "j": "JH",
    "k": "K", "l": "L", "m": "M", "n": "N", "o": "AA", "p": "P", "q": "K", "r": "R", "s": "S", "t": "T",
    "u": "AH", "v": "V", "w": "W", "x": "K S", "y": "IY", "z": "Z",
}.items(), key=lambda kv: -len(kv[0]))


def letters_to_arpabet(word: str) -> list[str]:
    """The crudest guess: English spelling rules, one grapheme at a time (double letters once, final e silent)."""
    w = re.sub(r"[^a-z]", "", word.lower())
    w = re.sub(r"(.)\1", r"\1", w)
    if len(w) > 2 and w.endswith("e") and w[-2] not in "aeiou":
        w = w[:-1]
    out: list[str] = []
    i = 0
    while i < len(w):
        if w[i] == "y" and i == 0:
            out.append("Y")
            i += 1
            continue
        for graph, phones in _LETTER_RULES:
            if w.startswith(graph, i):
                out += phones.split()
                i += len(graph)
                break
    return out or ["AH"]


_SIBILANTS = {"S", "Z", "SH", "ZH", "CH", "JH"}
_VOICELESS = {"P", "T", "K", "F", "TH"}


def _lookup(dec, word: str) -> list[str] | None:
    try:
        pron = dec.lookup_word(word)
    except Exception:  # noqa: BLE001 - a word the dictionary cannot even hold
        return None
    return pron.split() if pron else None


def _pronounce(dec, word: str) -> tuple[list[str], str]:
    """The word's phones (PocketSphinx set) and where they came from: dict, espeak or letters."""
    pron = _lookup(dec, word)
    if pron:
        return pron, "dict"
    if word.endswith("'s") and (base := _lookup(dec, word[:-2])):
        last = base[-1].rstrip("012")
        suffix = ["IH", "Z"] if last in _SIBILANTS else ["S"] if last in _VOICELESS else ["Z"]
        return base + suffix, "dict"
    if "'" in word and (pron := _lookup(dec, word.replace("'", ""))):
        return pron, "dict"
    guess = _espeak(word.replace("'", ""))
    if guess:
        return list(guess), "espeak"
    return letters_to_arpabet(word), "letters"


def _ensure_words(dec, words: list[str]) -> tuple[list[list[str]], set[str]]:
    """Every word's phones, adding the ones the dictionary lacks to it; the set of guessers used."""
    prons, guessed = [], set()
    for word in words:
        phones, source = _pronounce(dec, word)
        if source != "dict" or _lookup(dec, word) is None:
            dec.add_word(word, " ".join(phones), True)
        if source != "dict":
            guessed.add(source)
        prons.append(phones)
    return prons, guessed


def _g2p_tag(guessed: set[str]) -> str:
    return "".join(f"+g2p:{g}" for g in ("espeak", "letters") if g in guessed)


def pronunciations(words: list[str]) -> list[list[str]]:
    """The project-set phones of each word (dictionary, else espeak-ng, else letter rules)."""
    dec = _get_decoder()
    return [[arpabet(p) for p in _pronounce(dec, w)[0]] for w in words]


# ---------------------------------------------------------------------------------------------------------
# Audio helpers


def _prepare(audio) -> np.ndarray:
    """Mono float32, finite, in [-1, 1] (integer PCM scaled from its full scale)."""
    x = np.asarray(audio)
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        half = (int(info.max) + 1) / 2 if info.min == 0 else -float(info.min)  # unsigned PCM is offset by half
        x = (x.astype(np.float64) - (half if info.min == 0 else 0.0)) / half
    x = np.asarray(x, dtype=np.float32)
    if x.ndim > 1:
        x = x.mean(axis=1) if x.shape[1] < x.shape[0] else x.mean(axis=0)
    x = np.nan_to_num(x.reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(x, -1.0, 1.0)


def _pcm(x: np.ndarray) -> bytes:
    """16-bit PCM for PocketSphinx. Levels are left alone (its noise removal works on absolute levels, and
    recognition was better without gain or dither), except that a very quiet recording (peak under -48 dBFS)
    is brought up so that 16-bit rounding keeps it."""
    peak = float(np.abs(x).max()) if len(x) else 0.0
    gain = min(0.1 / peak, 1000.0) if 0 < peak < 1 / 256 else 1.0
    return np.clip(np.round(x * gain * 32767.0), -32768, 32767).astype("<i2").tobytes()


def voiced_span(x: np.ndarray, sr: int = SAMPLE_RATE) -> tuple[float, float] | None:
    """(start, end) in seconds of the part of `x` louder than its background (10 ms frames, threshold 15 dB
    over the quietest tenth and no more than 40 dB under the loudest frame), or None when all is quiet."""
    hop = sr // 100
    n = len(x) // hop
    if n == 0:
        return None
    frames = x[: n * hop].reshape(n, hop).astype(np.float64)
    db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    peak = db.max()
    if peak < -70:  # digital silence or close to it
        return None
    floor = np.percentile(db, 10)
    threshold = max(floor + 15.0, peak - 40.0)
    if peak - floor < 10.0 and n > 20:  # no contrast at all: steady noise or steady tone, call it all voiced
        return 0.0, len(x) / sr
    loud = np.flatnonzero(db > threshold)
    if len(loud) == 0:
        return None
    return loud[0] * hop / sr, min(len(x), (loud[-1] + 1) * hop) / sr


# ---------------------------------------------------------------------------------------------------------
# Timing assembly


def _silent(duration: float, method: str) -> Timing:
    return Timing((Phone(SILENCE, 0.0, duration),), (), method)


def _ps_phone(name: str) -> str:
    n = name.strip()
    if not n or n.upper() == "SIL" or n.startswith(("+", "<", "[")):
        return SILENCE
    try:
        return arpabet(n)
    except KeyError:
        return SILENCE


def _is_filler(word: str) -> bool:
    return word.startswith(("<", "[", "+")) or word.lower() in ("sil", "(null)")


def _base_word(name: str) -> str:
    return re.sub(r"\(\d+\)$", "", name)


def _assemble(segments: list[tuple[str, float, float]], words: list[tuple[str, int, int]],
              duration: float, method: str) -> Timing:
    """Timing from phone segments (phone, start s, end s) in order and words as (word, first phone index,
    last phone index + 1): silences merged, a leading "sil" from 0, the last phone reaching `duration`."""
    bounds = [min(max(s, 0.0), duration) for _, s, _ in segments] + [duration]
    for i in range(1, len(bounds)):  # monotonic
        bounds[i] = max(bounds[i], bounds[i - 1])
    phones = [p for p, _, _ in segments]
    # A leading silence always: if speech starts at once, a frame of "sil" is carved from the first phone.
    if not phones or phones[0] != SILENCE:
        cut = min(FRAME_S, (bounds[1] - bounds[0]) / 2) if phones else duration
        phones.insert(0, SILENCE)
        bounds.insert(1, bounds[0] + cut)
        words = [(w, a + 1, b + 1) for w, a, b in words]
    bounds[0] = 0.0
    # The end: the last phone runs to the end of the audio; a non-silent last phone longer than it should
    # be is left to the caller's trimming (see _trim_edges), here it just reaches `duration`.
    bounds[-1] = duration
    out_phones: list[Phone] = []
    index_map = []  # segment index -> out index
    for i, p in enumerate(phones):
        start, end = bounds[i], bounds[i + 1]
        if out_phones and p == SILENCE and out_phones[-1].phone == SILENCE:
            out_phones[-1] = Phone(SILENCE, out_phones[-1].start, end)
        elif end > start or not out_phones or i == len(phones) - 1 or p != SILENCE:
            out_phones.append(Phone(p, start, end))
        else:  # zero-length silence: drop
            index_map.append(len(out_phones) - 1)
            continue
        index_map.append(len(out_phones) - 1)
    out_words = []
    for w, a, b in words:
        if b <= a:
            continue
        first, last = index_map[a], index_map[b - 1]
        out_words.append(Word(w, out_phones[first].start, out_phones[last].end))
    return Timing(tuple(out_phones), tuple(out_words), method)


def _trim_edges(timing: Timing, x: np.ndarray) -> Timing:
    """Where the aligner let the last (first) phone run into the trailing (leading) silence that the energy
    detector sees, hand that stretch to "sil" (keeping each phone at least MIN_PHONE_FRAMES long)."""
    span = voiced_span(x)
    if span is None or len(timing.phones) < 2:
        return timing
    v_start, v_end = span
    margin = EDGE_MARGIN_S
    min_len = MIN_PHONE_FRAMES * FRAME_S
    phones = list(timing.phones)
    words = list(timing.words)
    # trailing
    last_speech = max(i for i, p in enumerate(phones) if p.phone != SILENCE) if any(
        p.phone != SILENCE for p in phones) else None
    if last_speech is not None:
        p = phones[last_speech]
        new_end = max(v_end + margin, p.start + min_len)
        if p.end > new_end + FRAME_S:
            phones[last_speech] = Phone(p.phone, p.start, new_end)
            if last_speech + 1 < len(phones):
                nxt = phones[last_speech + 1]
                phones[last_speech + 1] = Phone(nxt.phone, new_end, nxt.end)
            else:
                phones.append(Phone(SILENCE, new_end, p.end))
            words = [Word(w.word, w.start, min(w.end, new_end)) if w.end > new_end else w for w in words]
    first_speech = next((i for i, p in enumerate(phones) if p.phone != SILENCE), None)
    if first_speech is not None and first_speech > 0:
        p = phones[first_speech]
        new_start = min(v_start - margin, p.end - min_len)
        if new_start > p.start + FRAME_S:
            phones[first_speech] = Phone(p.phone, new_start, p.end)
            prev = phones[first_speech - 1]
            phones[first_speech - 1] = Phone(prev.phone, prev.start, new_start)
            words = [Word(w.word, max(w.start, new_start), w.end) if w.start < new_start else w for w in words]
    return Timing(tuple(phones), tuple(words), timing.method)


def _even_spread(x: np.ndarray, words: list[str], prons: list[list[str]], method: str) -> Timing:
    """The text's phones, equally long, over the voiced span (the whole audio when none is found)."""
    duration = len(x) / SAMPLE_RATE
    span = voiced_span(x) or (0.0, duration)
    start, end = span
    flat = [(arpabet(p), wi) for wi, pron in enumerate(prons) for p in pron]
    if not flat or duration <= 0:
        return _silent(duration, method)
    step = (end - start) / len(flat)
    segments, word_idx = [], {}
    if start > 0:
        segments.append((SILENCE, 0.0, start))
    for k, (p, wi) in enumerate(flat):
        first = word_idx.get(wi, (len(segments), 0))[0]
        word_idx[wi] = (first, len(segments) + 1)
        segments.append((p, start + k * step, start + (k + 1) * step))
    if end < duration:
        segments.append((SILENCE, end, duration))
    word_list = [(words[wi], a, b) for wi, (a, b) in sorted(word_idx.items())]
    return _assemble(segments, word_list, duration, method)


# ---------------------------------------------------------------------------------------------------------
# PocketSphinx passes


def _run(dec, pcm: bytes) -> None:
    dec.start_utt()
    dec.process_raw(pcm, no_search=False, full_utt=True)
    dec.end_utt()


def _force_align(dec, pcm: bytes, words: list[str]):
    """PocketSphinx's two alignment passes (word FSG, then state-level alignment of its best path):
    ([(phone, start frame, end frame)], [(word, first phone index, last + 1)], acoustic score) or None."""
    try:
        dec.set_align_text(" ".join(words))
        _run(dec, pcm)
        if dec.hyp() is None:
            return None
        dec.set_alignment()
        _run(dec, pcm)
        alignment = dec.get_alignment()
        if alignment is None:
            return None
        segments, word_spans, names, score = [], [], [], 0
        for w in alignment:
            first = len(segments)
            for p in w:
                segments.append((_ps_phone(p.name), p.start, p.start + p.duration))
                score += p.score
            name = _base_word(w.name)
            if not _is_filler(name) and len(segments) > first:
                word_spans.append((name, first, len(segments)))
                names.append(name)
        if names != words:
            return None
        return segments, word_spans, score
    except Exception:  # noqa: BLE001 - PocketSphinx refusing this text/audio is a failed alignment
        return None
    finally:
        try:
            dec.activate_search()
        except Exception:  # noqa: BLE001, S110 - back to the LM search if it can; the next call sets its own
            pass


def _phone_loop_score(dec, pcm: bytes) -> float | None:
    """Acoustic score of the best unconstrained phone sequence (PocketSphinx's allphone search)."""
    from pocketsphinx import get_model_path

    try:
        if "_phone_loop" not in _searches:
            dec.add_allphone_file("_phone_loop", get_model_path("en-us/en-us-phone.lm.bin"))
            _searches.add("_phone_loop")
        dec.activate_search("_phone_loop")
        _run(dec, pcm)
        score = sum(seg.ascore for seg in dec.seg())
        return float(score)
    except Exception:  # noqa: BLE001 - no phone loop, no check
        return None
    finally:
        try:
            dec.activate_search()
        except Exception:  # noqa: BLE001, S110
            pass


def _segments_to_seconds(segments):
    return [(p, a * FRAME_S + OFFSET_S, b * FRAME_S + OFFSET_S) for p, a, b in segments]


def _align_words(x: np.ndarray, words: list[str], method: str, *, check_fit: bool):
    """(Timing, None) for `words` over `x`, or (None, (why, pronunciations, guessers used)) when the audio is
    too short for them, alignment fails, or (with check_fit) the words do not fit the audio."""
    dec = _get_decoder()
    duration = len(x) / SAMPLE_RATE
    prons, guessed = _ensure_words(dec, words)
    method = method + _g2p_tag(guessed)
    if int(duration / FRAME_S) < MIN_PHONE_FRAMES * sum(len(p) for p in prons) + 2:
        return None, ("too-short", prons, guessed)
    pcm = _pcm(x)
    result = _force_align(dec, pcm, words)
    if result is None:
        return None, ("failed", prons, guessed)
    segments, word_spans, score = result
    if check_fit:
        loop = _phone_loop_score(dec, pcm)
        n = max(1, dec.n_frames())
        if loop is not None and (loop - score) / n > MISMATCH_PER_FRAME:
            return None, ("mismatch", prons, guessed)
    timing = _assemble(_segments_to_seconds(segments), word_spans, duration, method)
    return _trim_edges(timing, x), None


def _recognised_words(dec, pcm: bytes) -> tuple[list[str], list[tuple[str, float, float]]]:
    try:
        dec.activate_search()
        _run(dec, pcm)
        segs = [(_base_word(s.word), s.start_frame, s.end_frame + 1) for s in dec.seg()]
    except Exception:  # noqa: BLE001 - nothing recognised
        return [], []
    segs = [(w, a * FRAME_S + OFFSET_S, b * FRAME_S + OFFSET_S) for w, a, b in segs if not _is_filler(w)]
    return [w for w, _, _ in segs], segs


# ---------------------------------------------------------------------------------------------------------
# Public API


def align(audio: np.ndarray, text: str) -> Timing:
    """Words and phones of `text` timed over `audio` (16 kHz mono float32) by PocketSphinx forced alignment.
    Falls back to recognition when the text does not fit the audio, and to an even spread of the text's
    phones over the voiced span when the audio is too short or alignment fails (see the module docstring)."""
    x = _prepare(audio)
    duration = len(x) / SAMPLE_RATE
    words = normalise(text or "")
    if not words:
        return _silent(duration, "align:empty-text")
    if voiced_span(x) is None:
        return _silent(duration, "align:silent")
    timing, why = _align_words(x, words, METHOD_ALIGN, check_fit=True)
    if timing is not None:
        return timing
    reason, prons, guessed = why
    if reason != "too-short":  # the text does not fit: what was said instead, if PocketSphinx hears words
        heard = _recognise(x, METHOD_RECOGNISE + "+mismatch")
        if heard.words and heard.method.startswith(METHOD_RECOGNISE):
            return heard
    return _even_spread(x, words, prons, f"align:even-spread:{reason}" + _g2p_tag(guessed))


def _recognise(x: np.ndarray, method: str) -> Timing:
    duration = len(x) / SAMPLE_RATE
    if voiced_span(x) is None or duration < MIN_PHONE_FRAMES * FRAME_S * 2:
        return _silent(duration, "recognise:silent")
    dec = _get_decoder()
    words, segs = _recognised_words(dec, _pcm(x))
    if not words:
        return _silent(duration, "recognise:silent")
    timing, _ = _align_words(x, words, method, check_fit=False)
    if timing is not None:
        return timing
    # Alignment to its own hypothesis failed (rare): each word's phones spread over its decoded span.
    segments, spans = [], []
    t = 0.0
    for w, a, b in segs:
        if a > t:
            segments.append((SILENCE, t, a))
        phones = [arpabet(p) for p in _pronounce(dec, w)[0]]
        step = (b - a) / len(phones)
        spans.append((w, len(segments), len(segments) + len(phones)))
        segments += [(p, a + k * step, a + (k + 1) * step) for k, p in enumerate(phones)]
        t = b
    return _assemble(segments, spans, duration, "recognise:pocketsphinx+even-spread")


def recognise(audio: np.ndarray) -> Timing:
    """No transcript: PocketSphinx's LM decode, then forced alignment to its hypothesis. The words carry the
    hypothesis; silence (or nothing recognised) gives one "sil" over the audio."""
    return _recognise(_prepare(audio), METHOD_RECOGNISE)


def warm_up() -> None:
    """Load the process's Decoder now (it is otherwise loaded by the first call that needs it)."""
    _get_decoder()


def timing_for(audio: np.ndarray, text: str | None) -> Timing:
    """align() when there is a transcript (any non-blank text), else recognise()."""
    if text is not None and normalise(text):
        return align(audio, text)
    return recognise(audio)
