"""The package as pip builds it: quiet (no setuptools warning per data file) and whole (the served page, the
shipped weights and their manifest inside). Built with setuptools' own hooks in a copy of the project, so
nothing is installed anywhere."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _build(tmp_path: Path, hook: str) -> tuple[Path, str]:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    for folder in ("app", "pipelines", "models", "export"):
        shutil.copytree(ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    dist.mkdir()
    result = subprocess.run([sys.executable, "-c", f"import setuptools.build_meta as b; b.{hook}({str(dist)!r})"],
                            cwd=project, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return next(dist.glob("*.whl")), result.stdout + result.stderr


@pytest.mark.parametrize("hook", ["build_wheel", "build_editable"])
def test_building_says_nothing_about_packages_left_out(tmp_path, hook):
    _, log = _build(tmp_path, hook)
    assert "absent from the `packages` configuration" not in log, log[-2000:]


def test_the_wheel_ships_the_page_and_the_weights(tmp_path):
    wheel, _ = _build(tmp_path, "build_wheel")
    names = set(zipfile.ZipFile(wheel).namelist())
    page = {f"avcall/app/static/{p.name}" for p in (ROOT / "app" / "static").iterdir() if p.is_file()}
    weights = {f"avcall/models/weights/{p.name}" for p in (ROOT / "models" / "weights").glob("*.onnx")}
    assert {"avcall/app/static/index.html", "avcall/models/weights/manifest.json"} <= names
    assert page <= names and weights <= names, sorted(page | weights - names)
    assert "avcall/models/data/sentences.txt" in names


def test_the_wheel_ships_every_module(tmp_path):
    """A subpackage left out of `packages` is silently missing from a wheel (an editable install hides it)."""
    wheel, _ = _build(tmp_path, "build_wheel")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f"avcall/{p.relative_to(ROOT).as_posix()}" for folder in ("app", "pipelines", "models", "export")
               for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts}
    assert modules - names == set(), sorted(modules - names)
