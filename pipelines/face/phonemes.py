"""One phone set for every voice source (ARPAbet, lower case, no stress) and its visemes.

flite and festival speak this set already; espeak-ng's mnemonics and PocketSphinx's upper-case phones are
mapped onto it by `arpabet()`. A viseme is a class of phones that look alike on the lips.
"""

from __future__ import annotations

from dataclasses import dataclass

SILENCE = "sil"
PHONES = (
    "aa ae ah ao aw ax axr ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw v w y z zh"
).split() + [SILENCE]

# Viseme classes, from closed to open; names say what the mouth does.
VISEMES = ("sil", "pbm", "fv", "th", "tdnsz", "kg", "l", "shch", "r", "wuw", "ow", "aa", "eh", "iy")
_VISEME_PHONES = {
    "sil": "sil",
    "pbm": "p b m",
    "fv": "f v",
    "th": "th dh",
    "tdnsz": "t d n s z",
    "kg": "k g ng hh",
    "l": "l",
    "shch": "sh zh ch jh",
    "r": "r er axr",
    "wuw": "w uw uh",
    "ow": "ow oy ao",
    "aa": "aa ae aw ay",
    "eh": "eh ey ah ax",
    "iy": "iy ih y",
}
VISEME_OF = {p: v for v, phones in _VISEME_PHONES.items() for p in phones.split()}
VISEME_INDEX = {v: i for i, v in enumerate(VISEMES)}
assert set(VISEME_OF) == set(PHONES), set(PHONES) ^ set(VISEME_OF)

_ALIASES = {"pau": SILENCE, "h#": SILENCE, "sp": SILENCE, "spn": SILENCE, "brth": SILENCE, "+nsn+": SILENCE,
            "+spn+": SILENCE, "ssil": SILENCE, "#": SILENCE, "_": SILENCE, "": SILENCE, "el": "l", "em": "m",
            "en": "n", "dx": "d", "ix": "ih", "ux": "uw", "nx": "n", "q": SILENCE}


def arpabet(phone: str) -> str:
    """`AH0`, `ah`, `pau`, `SIL` -> the phone of PHONES; unknown phones raise KeyError."""
    p = phone.strip().lower().rstrip("012")
    p = _ALIASES.get(p, p)
    if p not in VISEME_OF:
        raise KeyError(f"not an ARPAbet phone: {phone!r}")
    return p


@dataclass(frozen=True)
class Phone:
    """One phone of an utterance: start and end in seconds from the start of its audio."""

    phone: str
    start: float
    end: float

    @property
    def viseme(self) -> str:
        return VISEME_OF[self.phone]


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Timing:
    """The phone (and, when known, word) timing of one utterance, and how it was made
    (`tts:flite`, `align:pocketsphinx`, `recognise:pocketsphinx`, ...)."""

    phones: tuple[Phone, ...]
    words: tuple[Word, ...] = ()
    method: str = ""

    def to_json(self) -> dict:
        return {"method": self.method,
                "phones": [[p.phone, round(p.start, 4), round(p.end, 4)] for p in self.phones],
                "words": [[w.word, round(w.start, 4), round(w.end, 4)] for w in self.words]}

    @classmethod
    def from_json(cls, d: dict) -> "Timing":
        return cls(tuple(Phone(p, s, e) for p, s, e in d["phones"]),
                   tuple(Word(w, s, e) for w, s, e in d.get("words", [])), d.get("method", ""))

    def scaled(self, factor: float) -> "Timing":
        """Times multiplied by `factor` (audio stretched in time by that factor)."""
        return Timing(tuple(Phone(p.phone, p.start * factor, p.end * factor) for p in self.phones),
                      tuple(Word(w.word, w.start * factor, w.end * factor) for w in self.words), self.method)
