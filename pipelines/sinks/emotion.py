"""The emotion readings of a call, kept: `emotion.jsonl` (one reading per line, as the stage emitted it) and
`emotion.png` (a timeline: the probabilities stacked over time, valence and arousal beneath), both written
when the stream ends, whole or not at all. `plot_timeline` also draws the demo report's timeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..frames import Event, Frame
from ..stage import Stage
from .atomic import write_atomic, write_text_atomic

COLOURS = {"neutral": "#9e9e9e", "happy": "#f4b400", "sad": "#4285f4", "angry": "#db4437", "fearful": "#8e44ad",
           "disgust": "#0f9d58", "surprise": "#ff7f0e"}


def plot_timeline(readings: list[dict], path: Path, title: str = "emotion") -> None:
    """A PNG timeline of `readings` (the stage's event data with "pts")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    t = np.array([r["pts"] for r in readings])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 3.6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    if len(t):
        probs = np.array([[r["probs"][c] for c in COLOURS] for r in readings]).T
        top.stackplot(t, probs, labels=list(COLOURS), colors=list(COLOURS.values()), alpha=0.85)
        bottom.plot(t, [r["valence"] for r in readings], label="valence", color="#0f9d58")
        bottom.plot(t, [r["arousal"] for r in readings], label="arousal", color="#db4437")
        gaps = [r["pts"] for r in readings if not r["sources"]]
        if gaps:
            top.plot(gaps, [1.02] * len(gaps), "k|", ms=4, label="held (no face, no voice)")
    top.set_ylim(0, 1.05)
    top.set_ylabel("probability")
    top.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    top.set_title(title, fontsize=9)
    bottom.set_ylim(-1, 1)
    bottom.axhline(0, color="#ccc", lw=0.5)
    bottom.set_xlabel("seconds")
    bottom.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.tight_layout()
    write_atomic(path, lambda partial: fig.savefig(partial, dpi=90))
    plt.close(fig)


class EmotionSink(Stage):
    accepts = (Event,)

    def __init__(self, folder: str | Path, *, name: str = "emotion_out") -> None:
        super().__init__(name)
        self.folder = Path(folder)
        self.readings: list[dict] = []

    async def process(self, frame: Frame) -> Sequence[Frame]:
        if frame.kind == "emotion":
            self.readings.append({"pts": frame.pts} | frame.data)
        return [frame]

    async def flush(self) -> Sequence[Frame]:
        write_text_atomic(self.folder / "emotion.jsonl", "".join(json.dumps(r) + "\n" for r in self.readings))
        await self.in_worker(plot_timeline, self.readings, self.folder / "emotion.png")
        return ()
