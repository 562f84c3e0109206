"""The README says only what holds: here, that its set-up paragraph names every system package set-up installs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_setup_paragraph_names_every_package_setup_installs():
    debs = re.search(r'^DEBS="([^"]+)"', (ROOT / "scripts" / "setup.sh").read_text(), re.M).group(1).split()
    readme = (ROOT / "README.md").read_text()
    setup = readme[readme.index("## Set up and run"):readme.index("```sh")]
    named = set(re.findall(r"`([^`]+)`", setup))
    named = {word for phrase in named for word in phrase.split()}
    assert set(debs) - named == set(), f"scripts/setup.sh installs these, the README does not say: {set(debs) - named}"
