"""The labelled data's layout (the classes themselves are `avcall.pipelines.nets.emotion.CLASSES`).

A data folder is laid out like ../shared/data/emotion_labelled: `labels.tsv` (file, modality, emotion,
speaker, dataset, split, ...) and the files it names. Real audio-visual data adds a `pair` column: the
recording a face image and a voice clip were both taken from.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


from avcall.pipelines.errors import InputError
from avcall.pipelines.nets.emotion import CLASSES


@dataclass(frozen=True)
class Item:
    path: Path
    modality: str  # "speech" or "face_image"
    label: int  # index into CLASSES
    speaker: str
    dataset: str
    split: str
    pair: str = ""  # the recording a face and a voice both come from, in real audio-visual data

    @property
    def partner_key(self) -> str:
        """Whom fusion pairs this item with: the other modality of its own recording when the data says
        which (`pair`), else any item of the other modality with its label."""
        return f"pair:{self.pair}" if self.pair else f"label:{self.label}"


def read_labels(folder: Path) -> list[Item]:
    """Every labelled file of `folder` whose emotion is one of CLASSES."""
    table = Path(folder) / "labels.tsv"
    if not table.is_file():
        raise InputError(f"{folder}: no labels.tsv (expected the emotion_labelled layout)")
    items = []
    with open(table, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row.get("emotion") in CLASSES:
                items.append(Item(Path(folder) / row["file"], row["modality"], CLASSES.index(row["emotion"]),
                                  row.get("speaker", ""), row.get("dataset", ""), row.get("split", ""),
                                  row.get("pair") or ""))
    return items
