"""Figures that hold (issue 31, point 7): every figure the README cites is a link to the JSON it comes from, with
the key as a JSON Pointer in the fragment, `[−10.7 dB](bench/enhance_eval.json#/summary/turns/avcall/other_leak_db)`,
and it equals that value rounded as printed (a `%` figure is the value times 100, unless its key ends in `_pct`). A JSON that names the command
and the commit that wrote it (`command`/`commit`, at its top or in `meta`) is cited as it is; one that does not is
marked `†` right after the link, and the mark must be there exactly when they are missing. In the feature table
every number of the figure columns is such a link. The same holds for such links in the pages under docs/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[([^\]]+)\]\(((?:\.\./)?bench/[^)#\s]+\.json)#(/[^)\s]*)\)(†?)")
NUMBER = re.compile(r"(?<![\w.])([+\-−]?)(\d+(?:\.\d+)?)(?![\w])")
UNMARKED = "†"


def _figures(page: Path) -> list[tuple[str, Path, str, bool]]:
    text = page.read_text()
    return [(shown, (page.parent / path).resolve(), pointer, mark == UNMARKED)
            for shown, path, pointer, mark in LINK.findall(text)]


def _at(document, pointer: str):
    """RFC 6901: /a/b/0 (~1 is '/', ~0 is '~')."""
    for token in pointer.lstrip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


def _printed(shown: str) -> tuple[float, int, bool]:
    match = NUMBER.search(shown)
    assert match, f"no number in the figure {shown!r}"
    sign, digits = match.groups()
    value = float(digits) * (-1 if sign in ("-", "−") else 1)
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    percent = shown[match.end():].lstrip().startswith("%")
    return value, decimals, percent


def _names_command_and_commit(document) -> bool:
    places = [document, document.get("meta") if isinstance(document, dict) else None]
    return any(isinstance(p, dict) and p.get("command") and p.get("commit") for p in places)


def _feature_table(readme: str) -> list[list[str]]:
    section = readme[readme.index("## What it does, measured"):]
    rows = []
    for line in section.split("\n")[1:]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


ALL = [(page.relative_to(ROOT).as_posix(), *figure) for page in PAGES for figure in _figures(page)]


def test_the_readme_cites_its_figures():
    readme_figures = [f for f in ALL if f[0] == "README.md"]
    assert len(readme_figures) >= 20, "the README's feature table cites its figures by link"
    assert len({f[2] for f in readme_figures}) >= 5


@pytest.mark.parametrize("page, shown, path, pointer, unmarked", ALL,
                         ids=[f"{f[0]}:{f[1]}:{f[3]}" for f in ALL])
def test_each_figure_equals_its_json(page, shown, path, pointer, unmarked):
    assert path.is_file(), f"{page}: {path} is not there"
    document = json.loads(path.read_text())
    value = _at(document, pointer)
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{pointer} in {path.name} is {value!r}"
    printed, decimals, percent = _printed(shown)
    value = value * 100 if percent and not pointer.endswith("_pct") else value
    assert abs(value - printed) <= 0.5 * 10 ** -decimals + 1e-9, (
        f"{page} prints {shown!r}; {path.name}#{pointer} is {value} ({value:.{decimals}f} as printed)")


@pytest.mark.parametrize("path", sorted({f[2] for f in ALL}), ids=lambda p: p.name)
def test_each_cited_json_names_its_command_and_commit_or_is_marked(path):
    named = _names_command_and_commit(json.loads(path.read_text()))
    marks = {f[4] for f in ALL if f[2] == path}
    if named:
        assert marks == {False}, f"{path.name} names its command and commit: no {UNMARKED} on its figures"
    else:
        assert marks == {True}, (f"{path.name} does not name the command and commit that wrote it: mark each of "
                                 f"its figures {UNMARKED} (or regenerate it with a command that records them)")


def test_every_number_in_the_feature_table_is_a_linked_figure():
    rows = _feature_table((ROOT / "README.md").read_text())
    assert len(rows) >= 8, "the feature table is there"
    header, *body = rows
    assert body and all(len(row) == len(header) for row in body), "the feature table's rows have the header's cells"
    for row in body:
        for cell in row[1:3]:
            bare = NUMBER.findall(LINK.sub("", cell))
            assert not bare, f"{row[0]!r}: {bare} not linked to the JSON it comes from"

