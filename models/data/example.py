"""The corpus example on disk, the one format every model trains from.

An example `NAME` in a corpus folder is three files under `examples/` (and an optional rendered face):
- `NAME.flac`: 16 kHz, 16-bit, five channels in CHANNELS order. mixture = target + interferer + noise,
  exactly, in integer samples (the mixture is summed from the stored parts).
- `NAME.lips.npz`: the target's lip track at `LIP_FPS`, keys as the tracker's `lips.npz` (pts, lips,
  opening, width, face_present, confidence): what the tracker would have measured on the speaker's face.
- `NAME.json`: text, phone timing (and how it was made), voices and their sources, SNRs, room, seed.
- `videos/NAME.mp4` (some examples): the portrait animated along the lip track, with the target voice.
Files are written byte-for-byte reproducibly: no timestamps, sorted keys.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ...pipelines.face.lip_track import LIP_FPS, LipTrack
from ...pipelines.frames import SAMPLE_RATE

CHANNELS = ("mixture", "target", "interferer", "noise", "target_dry")
FULL_SCALE = 32767


@dataclass
class Example:
    name: str
    audio: dict[str, np.ndarray]  # CHANNELS -> float32 in [-1, 1], all the same length
    lips: LipTrack
    meta: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.audio["mixture"]) / SAMPLE_RATE


def cache_root() -> Path:
    """Where derived, re-computable results are kept between runs (tracker output, alignments)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "avcall"


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) * FULL_SCALE), -FULL_SCALE, FULL_SCALE).astype(np.int16)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed, but reproducible: zip entries carry a fixed date."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def save_lip_track(path: Path, track: LipTrack) -> None:
    save_npz(path, {"pts": track.pts.astype(np.float64), "lips": track.lips.astype(np.float32),
                    "opening": track.opening.astype(np.float32), "width": track.width.astype(np.float32),
                    "face_present": track.face_present.astype(bool),
                    "confidence": track.confidence.astype(np.float32)})


def load_lip_track(path: Path) -> LipTrack:
    with np.load(path) as z:
        pts = z["pts"]
        fps = float(round(1.0 / np.median(np.diff(pts)), 3)) if len(pts) > 1 else LIP_FPS
        return LipTrack(z["lips"], z["opening"], z["width"], z["face_present"], z["confidence"], fps)


def write_example(folder: Path, ex: Example) -> None:
    """Writes NAME.flac, NAME.lips.npz and NAME.json; the mixture is re-summed from the int16 parts."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = {k: to_int16(ex.audio[k]).astype(np.int32) for k in CHANNELS if k != "mixture"}
    mixture = parts["target"] + parts["interferer"] + parts["noise"]
    if np.abs(mixture).max(initial=0) > FULL_SCALE:
        raise ValueError(f"{ex.name}: the mixture clips; scale the parts down before writing")
    channels = [mixture] + [parts[k] for k in CHANNELS[1:]]
    data = np.stack(channels, axis=1).astype(np.int16)
    sf.write(folder / f"{ex.name}.flac", data, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    save_lip_track(folder / f"{ex.name}.lips.npz", ex.lips)
    (folder / f"{ex.name}.json").write_text(json.dumps(ex.meta, indent=1, sort_keys=True) + "\n")


def read_example(folder: Path, name: str) -> Example:
    data, rate = sf.read(folder / f"{name}.flac", dtype="int16", always_2d=True)
    if rate != SAMPLE_RATE or data.shape[1] != len(CHANNELS):
        raise ValueError(f"{name}.flac: expected {len(CHANNELS)} channels at {SAMPLE_RATE} Hz")
    audio = {k: data[:, i].astype(np.float32) / FULL_SCALE for i, k in enumerate(CHANNELS)}
    meta = json.loads((folder / f"{name}.json").read_text())
    return Example(name, audio, load_lip_track(folder / f"{name}.lips.npz"), meta)


def example_names(corpus: Path) -> list[str]:
    return sorted(p.name[:-5] for p in (corpus / "examples").glob("*.json"))
