"""Caption files: the final caption lines as WebVTT and SubRip (SRT), cues in time order, never overlapping.

`CaptionSink` collects the captioner's final events and writes `captions.vtt` and `captions.srt` when the
stream ends (passing every frame on). `cues()`, `webvtt()` and `srt()` are usable on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..frames import Caption, Event, Frame, Word
from ..stage import Stage
from .atomic import write_text_atomic

MIN_CUE_S = 0.3  # a cue shorter than this flashes by unread
LINE_CHARS = 42  # characters a caption line holds, the usual limit for subtitles
CUE_LINES = 2  # lines a cue holds


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def wrap(words: Sequence[str], width: int = LINE_CHARS) -> list[str]:
    """Words into lines of at most `width` characters, greedily (a word longer than that is cut)."""
    lines: list[str] = []
    for word in words:
        for piece in (word[i:i + width] for i in range(0, len(word), width)):
            if lines and len(lines[-1]) + 1 + len(piece) <= width:
                lines[-1] += " " + piece
            else:
                lines.append(piece)
    return lines


def cues(captions: Iterable[Caption]) -> list[Cue]:
    """The final captions as cues: the finals of one spoken line joined, split again where they would take
    more than CUE_LINES lines of LINE_CHARS characters (the lines joined by a line break), sorted by start;
    each ends before the next starts and lasts at least MIN_CUE_S where the next one leaves room."""
    finals = sorted((c for c in captions if c.kind == "final" and c.text.strip()), key=lambda c: c.start)
    groups: list[list[tuple[str, float, float]]] = []
    for line in dict.fromkeys(c.line for c in finals):
        words = [(w.text, w.start, w.end) for c in finals if c.line == line
                 for w in (c.words or (Word(c.text, c.start, c.end),))]
        groups.append([])
        for word in words:
            if groups[-1] and len(wrap([w[0] for w in groups[-1] + [word]])) > CUE_LINES:
                groups.append([])
            groups[-1].append(word)
    # a single word of more than CUE_LINES lines (never in speech) is its own cue, cut to fit
    spans = sorted(((g[0][1], g[-1][2], "\n".join(wrap([w[0] for w in g])[:CUE_LINES])) for g in groups if g),
                   key=lambda x: x[0])
    out: list[Cue] = []
    for i, (first, last, text) in enumerate(spans):
        start = max(first, out[-1].end if out else 0.0, 0.0)
        end = max(last, start + MIN_CUE_S)
        if i + 1 < len(spans):
            end = min(end, max(spans[i + 1][0], start + 0.001))
        out.append(Cue(start, end, text))
    return out


def _stamp(seconds: float, sep: str) -> str:
    ms = round(max(seconds, 0.0) * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def webvtt(items: Sequence[Cue], language: str = "") -> str:
    """The cues as WebVTT; `language` (a code: "de") in the header, as `Language: de`."""
    blocks = ["WEBVTT" + (f"\nLanguage: {language}" if language else "")]
    blocks += [f"{i}\n{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n{c.text}" for i, c in enumerate(items, 1)]
    return "\n\n".join(blocks) + "\n"


def srt(items: Sequence[Cue]) -> str:
    return "".join(f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n{c.text}\n\n"
                   for i, c in enumerate(items, 1))


class CaptionSink(Stage):
    accepts = (Event,)

    def __init__(self, folder: str | Path, *, name: str = "captions_out") -> None:
        super().__init__(name)
        self.folder = Path(folder)
        self.captions: list[Caption] = []

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if frame.kind == "caption" and frame.data.get("kind") == "final":
            self.captions.append(Caption.from_json(frame.data))
        return [frame]

    async def flush(self) -> Sequence[Frame]:
        items = cues(self.captions)
        language = next((c.language for c in reversed(self.captions) if c.language), "")
        write_text_atomic(self.folder / "captions.vtt", webvtt(items, language))
        write_text_atomic(self.folder / "captions.srt", srt(items))
        return ()
