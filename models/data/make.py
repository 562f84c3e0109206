"""`avcall corpus make`: plans the corpus, makes examples on parallel workers, writes them in order.

Determinism: example i depends only on (seed, i) and the plan, and the main process writes examples in
index order and stops at the first index that brings the total to the requested minutes, so the same
command gives the same files byte for byte whatever the number of workers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ...pipelines.errors import InputError, OutputError
from .example import save_lip_track, write_example
from avcall.pipelines.face.lip_model import LipModel
from .mix import Plan, Recipe, VoicePool, make_example, pick_source
from .tts import available_voices
from .voices import real_utterances, stable_seed

CORPUS_VERSION = 1


@dataclass(frozen=True)
class MakeConfig:
    out: Path
    minutes: float
    seed: int = 0
    workers: int = 2
    real_voices: Path | None = None
    video_share: float = 0.05
    portrait: Path | None = None
    recipe: Recipe = Recipe()


def real_order(pool: VoicePool, seed: int) -> list[int]:
    """Real utterances round-robin over speakers in a seeded order: the first picks are all different
    speakers, so even a small corpus has many real speakers."""
    rng = np.random.default_rng(stable_seed(seed, "real-order"))
    by_speaker: dict[str, list[int]] = {}
    for i, utt in enumerate(pool.real):
        by_speaker.setdefault(utt.speaker, []).append(i)
    speakers = sorted(by_speaker)
    rng.shuffle(speakers)
    for s in speakers:
        rng.shuffle(by_speaker[s])
    order, depth = [], 0
    while len(order) < len(pool.real):
        order += [by_speaker[s][depth] for s in speakers if depth < len(by_speaker[s])]
        depth += 1
    return order


def plans(cfg: MakeConfig, pool: VoicePool) -> Iterator[Plan]:
    """The endless plan: roles drawn at the recipe's shares, real utterances taken in turn."""
    rng = np.random.default_rng(stable_seed(cfg.seed, "plan"))
    order = real_order(pool, cfg.seed)
    n_real = len(order)
    target_turn, talker_turn = 0, n_real // 2  # competing talkers start half way round the list
    index = 0
    while True:
        source = pick_source(rng, pool, cfg.recipe)
        real_index = None
        if source == "real":
            real_index, target_turn = order[target_turn % n_real], target_turn + 1
        talker = pick_source(rng, pool, cfg.recipe) if rng.random() < cfg.recipe.interferer_share else None
        talker_index = None
        if talker == "real":
            talker_index, talker_turn = order[talker_turn % n_real], talker_turn + 1
        video = bool(rng.random() < cfg.video_share)
        yield Plan(f"{index:06d}", cfg.seed, index, source, real_index, talker, talker_index, video)
        index += 1


_worker_state: dict = {}


def _init_worker(pool: VoicePool, recipe: Recipe, videos: Path, portrait: Path | None) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker_state.update(pool=pool, recipe=recipe, lips=LipModel.load(), videos=videos, portrait=portrait)


def _make(plan: Plan):
    """Makes example `plan.index` (and renders its video) on a worker."""
    s = _worker_state
    example, clean = make_example(plan, s["pool"], s["lips"], s["recipe"])
    if plan.video:
        from avcall.pipelines.face.render import load_portrait, render_video

        if "portrait_image" not in s:
            s["portrait_image"] = load_portrait(s["portrait"]) if s["portrait"] else None
        s["videos"].mkdir(exist_ok=True)
        # the lip track that drove the renderer (no tracker artefacts), for the round-trip check
        save_lip_track(s["videos"] / f"{plan.name}.lips.npz", clean)
        render_video(s["videos"] / f"{plan.name}.mp4", clean, example.audio["target_dry"],
                     portrait=s["portrait_image"], seed=plan.index)
    return example


def check_new_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} is not empty: give a new folder (a corpus is never mixed into another)")


def make_corpus(cfg: MakeConfig, progress: Callable[[float, float], None] | None = None) -> dict:
    """Writes the corpus into cfg.out (which must be new or empty) and returns its summary."""
    if cfg.minutes <= 0:
        raise InputError("--minutes must be positive")
    out = cfg.out
    check_new_folder(out)
    tts = available_voices()
    real = real_utterances(cfg.real_voices) if cfg.real_voices else ()
    if not tts and not real:
        raise InputError("no voices: install flite, festival or espeak-ng (scripts/setup.sh), or give --real-voices")
    pool = VoicePool(tts, real)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "examples").mkdir(parents=True)
    target_s, total_s, written = cfg.minutes * 60, 0.0, []
    videos = staging / "videos"
    # spawned, not forked: a fork of a process that already runs onnxruntime, torch or mediapipe threads can
    # inherit a lock held by one of them and wait on it for ever (it hung the test suite in CI)
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker,
                             initargs=(pool, cfg.recipe, videos, cfg.portrait)) as executor:
        pending: deque = deque()
        plan_iter = plans(cfg, pool)
        while total_s < target_s:
            while len(pending) < 4 * cfg.workers:
                plan = next(plan_iter)
                pending.append((plan, executor.submit(_make, plan)))
            plan, future = pending.popleft()
            example = future.result()
            write_example(staging / "examples", example)
            written.append(example.meta)
            total_s += example.seconds
            if progress:
                progress(min(total_s, target_s), target_s)
        for _, future in pending:
            future.cancel()
    # workers ran ahead of the last example written: drop what they rendered beyond it
    names = {m["name"] for m in written}
    for extra in (videos.glob("*") if videos.exists() else ()):
        if extra.name.split(".")[0] not in names:
            extra.unlink()
    summary = {"version": CORPUS_VERSION, "seed": cfg.seed, "minutes_asked": cfg.minutes,
               "examples": len(written), "seconds": round(total_s, 3), "recipe": cfg.recipe.to_json(),
               "voices": [v.id for v in tts], "real_voices": len(real),
               "portrait": cfg.portrait.name if cfg.portrait else "skimage.data.astronaut"}
    (staging / "corpus.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    if out.exists():
        out.rmdir()
    staging.rename(out)
    return summary
