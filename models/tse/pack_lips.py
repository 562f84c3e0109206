"""Pack design 2's training set: real faces with their own voices (av_train clips whose tracker output is in the
cache, or is made here), each with the sync judge's lip embedding per 40 ms as the runtime computes it
(pipelines/target_talker: the lip row of the latest video frame, minus the running mean mouth, window of the
last five grid frames), plus every voice of pack.py as the competing talkers.

  python -m avcall.models.tse.pack_lips --voices voices.npz --out voices_lips.npz [--clips-per-grid 8]

Writes voices.npz's arrays with the av_train clips appended (untrimmed, so the lips stay aligned) and
  emb (frames of all faces, 64) float16, emb_start (utterances,) where each face's rows begin, has (utterances,)
  bool (False: a voice without a face, a competing talker only).
Validation: speaker-disjoint as pack.py (GRID s1 always in training; its dev clip GRID_bbaf2n is then not an
independent figure for design 2, and EDTalk_uncrop_Obama's speaker is left out).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from .pack import DATA, is_val

VIDEO_FRAME = 640


def lip_embeddings(track, audio_offset: float, samples: int, judge) -> np.ndarray:
    """(grid frames, 64): for grid frame g, the judge's embedding of the window g-4..g (zeros without a face)."""
    from avcall.pipelines.target_talker import HOP, _LipStream, clip_lip_rows

    hops = samples // HOP
    rows = clip_lip_rows(track, audio_offset, hops)
    stream = _LipStream()
    out, wins, where = np.zeros((-(-samples // VIDEO_FRAME), 64), np.float32), [], []
    for g in range(len(out)):
        hop = min(hops - 1, (g * VIDEO_FRAME) // HOP)  # the row the runtime holds at the grid frame's time
        stream.add(rows[hop])
        w = stream.window()
        if w is not None:
            wins.append(w[0])
            where.append(g)
    if wins:
        out[where] = judge.lips.run(None, {"lips": np.stack(wins)})[0]
    return out


def main(argv=None) -> int:
    from avcall.models.data.measure import measure_video
    from avcall.pipelines.nets.sync_judge import SyncJudge

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--voices", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--clips-per-grid", type=int, default=8, help="every Nth GRID s1 clip")
    p.add_argument("--cached-only", action="store_true", help="only clips the tracker has already measured")
    a = p.parse_args(argv)
    z = dict(np.load(a.voices))
    judge = SyncJudge()
    root = a.data / "av_train"
    rows = list(csv.DictReader(open(root / "MANIFEST.tsv"), delimiter="\t"))
    picked = [r for r in rows if not r["dev_set_speaker"].strip()]
    picked += [r for r in rows if r["dev_set_speaker"].strip() == "GRID_bbaf2n"][::a.clips_per_grid]
    names = list(z["speakers"])
    audio, starts, lengths, speaker, val, embs = [z["audio"]], list(z["starts"]), list(z["lengths"]), \
        list(z["speaker"]), list(z["val"]), []
    at = len(z["audio"])
    for r in picked:
        path = root / "clips" / f"{r['clip_id']}.mkv"
        if a.cached_only:
            import hashlib

            from avcall.models.data.measure import cache_dir

            key = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
            if not (cache_dir() / f"{key}.lips.npz").exists():
                continue
        m = measure_video(path)
        x = np.asarray(m.audio, np.float32)
        if len(x) < 16000:
            continue
        x = x / (np.abs(x).max() + 1e-6) * 0.9
        name = f"avlips:{r['speaker']}"
        if name not in names:
            names.append(name)
        audio.append(np.round(x * 32767).astype(np.int16))
        starts.append(at)
        lengths.append(len(x))
        at += len(x)
        speaker.append(names.index(name))
        val.append(is_val(name) and "GRID" not in r["dataset"])
        embs.append((len(starts) - 1, lip_embeddings(m.track, float(m.audio_offset), len(x), judge)))
    frames = max(len(e) for _, e in embs)
    has = np.zeros(len(starts), bool)
    emb_start = np.zeros(len(starts), np.int64)
    at_e = 0
    for i, e in embs:
        has[i], emb_start[i] = True, at_e
        at_e += len(e)
    emb = np.concatenate([e for _, e in embs]).astype(np.float16)
    np.savez(a.out, audio=np.concatenate(audio), starts=np.array(starts, np.int64), lengths=np.array(lengths, np.int64),
             speaker=np.array(speaker, np.int32), speakers=np.array(names).astype(str), val=np.array(val, bool),
             emb=emb, emb_start=emb_start, has=has)
    print({"faces": int(has.sum()), "faces_val": int((has & np.array(val)).sum()), "frames": frames,
           "minutes_faces": sum(lengths[i] for i, _ in embs) / 16000 / 60})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
