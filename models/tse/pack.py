"""Pack the real voices the extractor trains on into one compact array carried with a training job.

`python -m avcall.models.tse.pack --out runs/tse/voices.npz` reads `../shared/data/speech_train` (every
utterance) and the audio of `../shared/data/av_train` (clips of speakers that are not in the evaluation
clips: `dev_set_speaker` rows are left out, so figures on talking_faces/ stay independent) and writes:
  audio    int16, every utterance end to end, 16 kHz (silences longer than 0.3 s at the ends trimmed)
  starts   int64, where each utterance starts; lengths int64
  speaker  int32, a speaker index per utterance; speakers (str) their names
  val      bool per utterance: speaker-disjoint validation (a fixed hash of the speaker name, ~8%)
Nothing here is a yardstick folder (talking_faces/, speech/, noise/ are never read).
"""

from __future__ import annotations

import argparse
import csv
import zlib
from pathlib import Path

import numpy as np

from avcall.pipelines.frames import SAMPLE_RATE
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
VAL_SHARE = 0.08


def is_val(speaker: str) -> bool:
    return (zlib.crc32(speaker.encode()) % 1000) < VAL_SHARE * 1000


def _trim(x: np.ndarray, floor_db: float = -40.0) -> np.ndarray:
    if len(x) < SAMPLE_RATE // 2:
        return x
    frames = len(x) // 160
    e = 10 * np.log10(np.mean(x[:frames * 160].reshape(frames, 160) ** 2, axis=1) + 1e-10)
    loud = np.nonzero(e > e.max() + floor_db)[0]
    if len(loud) == 0:
        return x
    a, b = max(0, loud[0] * 160 - 4800), min(len(x), (loud[-1] + 1) * 160 + 4800)
    return x[a:b]


def read_audio(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        res = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        parts = []
        for frame in c.decode(stream):
            for f in res.resample(frame):
                parts.append(f.to_ndarray().reshape(-1))
        for f in res.resample(None):
            parts.append(f.to_ndarray().reshape(-1))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def sources(data: Path):
    """(speaker, path) of every voice that may be trained on."""
    with open(data / "speech_train" / "MANIFEST.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            yield f"st:{row['speaker']}", data / "speech_train" / row["file"]
    with open(data / "av_train" / "MANIFEST.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row.get("dev_set_speaker", "").strip():
                continue
            yield f"av:{row['speaker']}", data / "av_train" / "clips" / f"{row['clip_id']}.mkv"


def pack(data: Path, out: Path) -> dict:
    audio, starts, lengths, speaker, names = [], [], [], [], {}
    at = 0
    for name, path in sources(data):
        if path is None or not path.is_file():
            continue
        x = _trim(read_audio(path))
        if len(x) < SAMPLE_RATE:
            continue
        x = x / (np.abs(x).max() + 1e-6) * 0.9
        audio.append(np.round(x * 32767).astype(np.int16))
        starts.append(at)
        lengths.append(len(x))
        at += len(x)
        speaker.append(names.setdefault(name, len(names)))
    spk_names = np.array(list(names), dtype=object).astype(str)
    val = np.array([is_val(spk_names[s]) for s in speaker], bool)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, audio=np.concatenate(audio), starts=np.array(starts, np.int64), lengths=np.array(lengths, np.int64),
             speaker=np.array(speaker, np.int32), speakers=spk_names, val=val)
    return {"utterances": len(starts), "speakers": len(names), "minutes": at / SAMPLE_RATE / 60,
            "val_utterances": int(val.sum()), "val_speakers": len({s for s, v in zip(speaker, val) if v})}


MU = 255.0


def mulaw_table() -> np.ndarray:
    """The float value of each of the 256 mu-law codes (the GPU recipe's packed format)."""
    u = np.arange(256) / 255.0 * 2 - 1
    return (np.sign(u) * np.expm1(np.abs(u) * np.log1p(MU)) / MU).astype(np.float32)


def compact(src: Path, out: Path, minutes: float, seed: int = 0) -> dict:
    """The packed voices for a job that travels (the device machine takes 64 MiB with the repository): 8-bit
    mu-law, compressed, utterances in a fixed random order up to `minutes` (every validation utterance kept)."""
    z = dict(np.load(src))
    x = z["audio"].astype(np.float32) / 32768
    order = np.random.default_rng(seed).permutation(len(z["starts"]))
    keep, total = [], 0
    for i in order:
        if z["val"][i] or z.get("has", np.zeros(len(order), bool))[i] or total < minutes * 60 * SAMPLE_RATE:
            keep.append(i)
            total += 0 if z["val"][i] else int(z["lengths"][i])
    keep = sorted(keep)
    parts, starts, at = [], [], 0
    for i in keep:
        seg = x[z["starts"][i]:z["starts"][i] + z["lengths"][i]]
        u = np.sign(seg) * np.log1p(MU * np.abs(seg)) / np.log1p(MU)
        parts.append(np.round((u + 1) / 2 * 255).astype(np.uint8))
        starts.append(at)
        at += len(seg)
    lips = {}
    if "emb" in z:  # pack_lips's faces travel too (design 2), their rows in the kept utterances' order
        rows = -(-z["lengths"] // 640)
        has = z["has"][keep]
        emb = [z["emb"][z["emb_start"][i]:z["emb_start"][i] + rows[i]] for i in keep if z["has"][i]]
        first = np.zeros(len(keep), np.int64)
        first[has] = np.concatenate([[0], np.cumsum([len(e) for e in emb])[:-1]])
        lips = {"emb": np.concatenate(emb), "emb_start": first, "has": has}
    np.savez_compressed(out, audio=np.concatenate(parts), mulaw=mulaw_table(), starts=np.array(starts, np.int64),
                        lengths=z["lengths"][keep], speaker=z["speaker"][keep], speakers=z["speakers"], val=z["val"][keep],
                        **lips)
    return {"utterances": len(keep), "minutes": at / SAMPLE_RATE / 60, "bytes": out.stat().st_size}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--compact-from", type=Path, default=None, help="a voices.npz to pack as 8-bit mu-law")
    p.add_argument("--minutes", type=float, default=50.0, help="with --compact-from: training minutes kept")
    a = p.parse_args(argv)
    print(compact(a.compact_from, a.out, a.minutes) if a.compact_from else pack(a.data, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
