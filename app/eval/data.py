"""The evaluations' data: the real recordings of a folder laid out like `../shared/data` (talking_faces/,
speech/, noise/) read as 16 kHz mono float32, the helpers every evaluation builds its mixtures with (looping
to a length, scaling to an SNR, a clip's own random stream), and the report writer. The talking-face clips
are found by `avcall.models.data.shared_data.talking_face_clips` (the training recipes use it too).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from avcall.models.data.shared_data import clip_rng, fit_length  # noqa: F401 - the evaluations' helpers
from avcall.pipelines.errors import InputError, OutputError
from avcall.pipelines.frames import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}


def load_audio(path: Path) -> np.ndarray:
    """A sound file as 16 kHz mono float32."""
    from math import gcd

    import numpy as np
    import soundfile as sf
    from scipy.signal import resample_poly

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = gcd(rate, SAMPLE_RATE)
        mono = resample_poly(mono.astype(np.float64), SAMPLE_RATE // g, rate // g)
    return np.asarray(mono, np.float32)

def check_data_dir(data: Path | None) -> Path:
    if data is None:
        raise InputError("no data folder: ../shared/data is not beside this checkout; give --data DIR "
                         "(with talking_faces/, speech/ and noise/)")
    data = Path(data)
    missing = [sub for sub in ("talking_faces", "speech", "noise") if not (data / sub).is_dir()]
    if missing:
        raise InputError(f"--data {data}: no {', '.join(m + '/' for m in missing)} there (expected the layout "
                         "of ../shared/data: talking_faces/, speech/, noise/)")
    return data

def speech_files(data: Path) -> list[Path]:
    return sorted(p for p in (data / "speech").iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)

def noise_pairs(data: Path) -> list[tuple[str, Path, Path]]:
    """(name, noisy, clean) for each real pair in noise/: `X_noisy_Y` with `X_clean_Y`, and `STEM_..._NdB`
    with `STEM` (the PESQ example's babble mixture and its clean speech)."""
    files = {p.stem: p for p in sorted((data / "noise").iterdir()) if p.suffix.lower() in AUDIO_SUFFIXES}
    pairs = []
    for stem, path in files.items():
        m = re.fullmatch(r"(.*)_noisy_(.*)", stem)
        if m and f"{m[1]}_clean_{m[2]}" in files:
            pairs.append((f"{m[1]}_{m[2]}", path, files[f"{m[1]}_clean_{m[2]}"]))
            continue
        if re.search(r"_-?\d+(\.\d+)?dB$", stem):
            clean = [s for s in files if s != stem and stem.startswith(s + "_")]
            if clean:
                pairs.append((stem, path, files[max(clean, key=len)]))
    return pairs

def noise_files(data: Path) -> list[Path]:
    """The real noises of noise/: every sound there that is not half of a noisy/clean pair (on
    ../shared/data: car, street, two-talker babble, cafe, dishes, exercise bike, speechbrain noise1)."""
    in_pairs = {p for _, noisy, clean in noise_pairs(data) for p in (noisy, clean)}
    return sorted(p for p in (data / "noise").iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p not in in_pairs)

def scale_to_snr(target: np.ndarray, added: np.ndarray, snr_db: float) -> np.ndarray:
    """`added` scaled so that energy(target) / energy(added) is `snr_db` over the whole length."""
    import numpy as np

    et = float(np.dot(target.astype(np.float64), target.astype(np.float64)))
    ea = float(np.dot(added.astype(np.float64), added.astype(np.float64)))
    if et <= 0 or ea <= 0:
        raise ValueError("scale_to_snr: silent signal")
    return (added.astype(np.float64) * np.sqrt(et / (ea * 10 ** (snr_db / 10)))).astype(np.float32)

def git_commit() -> str | None:
    """The checkout's commit (with "+changes" when its tracked code differs from it), for a report to name."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        # the code's changes: not the figures and pages that benches and notes write beside it
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench",
                                ":!docs", ":!README.md"], cwd=root, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def command_line() -> str | None:
    """The avcall command this process runs (`avcall bench avatar --out X`), None when it is not one (a test)."""
    import sys

    if Path(sys.argv[0]).name not in ("avcall", "cli.py"):
        return None
    return "avcall " + " ".join(sys.argv[1:])


def with_provenance(report: dict) -> dict:
    """`report` naming the command and the commit that made it (in its `meta` where it has one), where it does
    not already."""
    if isinstance(report.get("meta"), dict):
        return {**report, "meta": with_provenance(report["meta"])}
    return {**report, "command": report.get("command") or command_line(),
            "commit": report.get("commit") or git_commit()}


def write_report(path: Path, report: dict) -> dict:
    """JSON written whole or not at all (a temporary file beside it, then renamed), naming the command and the
    commit that made it; returns what it wrote."""
    from avcall.pipelines.sinks.atomic import write_text_atomic

    report = with_provenance(report)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
    write_text_atomic(path, json.dumps(report, indent=1, allow_nan=False) + "\n")
    return report
