"""The one training loop of avcall's recipes (`avcall train ...`): resume from a checkpoint, a time budget,
periodic evaluation (one JSON line each in the run's train.log), periodic checkpoints, a progress bar or log
lines, gradient clipping and the learning-rate schedule. A recipe says what a step is (draw a batch, return
its loss) and what an evaluation measures; the loop does the rest the same way for every family:

    step = resume(out / "checkpoint.pt", restore)      # 0, or the step the checkpoint was written at
    done = train_loop(one_step, opt, Loop(steps=..., every=..., checkpoint=out / "checkpoint.pt",
                                          log=out / "train.log", max_minutes=...),
                      start=step, evaluate=measure, state=lambda: {"model": ..., "opt": ...})

Each evaluation row is {"step", "loss", ...what `evaluate` returns..., "seconds"}; rows come every `every`
steps, at the last step, and when the time budget stops the run (which also writes the checkpoint, so a rerun
with the same folder goes on from there). A checkpoint is what `state()` returns plus "step", written with
torch.save, so each recipe keeps its own checkpoint layout. torch is imported when a loop runs, so that a recipe's
arguments (`avcall --help`) never load it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch


def cosine(base: float, step: int, steps: int, floor: float = 0.0) -> float:
    """`base` on half a cosine from 1 at step 0 to `floor` at `steps` (and after)."""
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0))))


def resume(checkpoint: Path | None, restore: Callable[[dict], None], map_location: Any = None) -> int:
    """The step `checkpoint` was written at after `restore` took its contents, or 0 where there is none."""
    import torch

    if checkpoint is None or not Path(checkpoint).exists():
        return 0
    state = torch.load(checkpoint, map_location=map_location)
    restore(state)
    return int(state["step"])


class Best:
    """The best evaluation so far (a higher `key` is better; None until the first): `offer` marks the row of
    one that beats it ("best": true) and saves."""

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def offer(self, key: Any, row: dict, save: Callable[[], None]) -> bool:
        if self.value is not None and not key > self.value:
            return False
        self.value = key
        row["best"] = True
        save()
        return True


@dataclass
class Loop:
    """How a run steps (see the module's docstring)."""

    steps: int
    every: int  # evaluate every N steps (and at the last, and when the time is up)
    checkpoint: Path | None = None  # None: no checkpoints (a fine-tune that keeps only its best)
    ckpt_every: int | None = None  # checkpoint cadence where it is not the evaluations'
    max_minutes: float = 0.0  # time budget; 0: run to `steps`
    clip: float | None = None  # gradient norm clipping
    log: Path | None = None  # the JSON lines of the evaluations (appended)
    say: Callable[[str], None] | None = None  # each evaluation's line also said here (print, stderr)
    progress: str | None = None  # a progress bar with this title (None: none)
    digits: int = 4  # of the loss in the rows (the bar shows one fewer)
    eval_first: bool = False  # also evaluate before the first step (a fine-tune's step 0: the net it starts from)


@dataclass
class Done:
    step: int
    loss: float | None  # the last step's
    seconds: float
    out_of_time: bool


def train_loop(one_step: Callable[[int], torch.Tensor], opt: torch.optim.Optimizer, loop: Loop, *, start: int = 0,
               evaluate: Callable[[int], dict] | None = None, keep: Callable[[dict], Any] | None = None,
               state: Callable[[], dict] | None = None, lr: Callable[[int], float] | None = None,
               sched: Any = None) -> Done:
    """Steps from `start` to `loop.steps`: `one_step(step)` returns the loss of a batch; the loop sets the
    learning rate (`lr(step)`, or `sched` stepped after the optimiser), back-propagates, clips and steps.
    `evaluate(step)` adds to each evaluation row; `keep(row)` sees the whole row before it is written (to keep
    the best: `Best.offer`); `state()` is the checkpoint's contents (without the step)."""
    import torch
    from tqdm import tqdm

    params = [p for group in opt.param_groups for p in group["params"]]
    ckpt_every = loop.ckpt_every or loop.every
    bar = tqdm(total=loop.steps, initial=start, desc=loop.progress, disable=loop.progress is None)
    started = time.time()
    step, loss = start, None

    def report(step: int) -> None:
        row = {"step": step, "loss": None if loss is None else round(loss, loop.digits)}
        row |= evaluate(step) if evaluate else {}
        row["seconds"] = round(time.time() - started, 1)
        if keep is not None:
            keep(row)
        line = json.dumps(row)
        if loop.log is not None:
            with Path(loop.log).open("a") as f:
                f.write(line + "\n")
        if loop.say is not None:
            loop.say(line)

    if loop.eval_first:
        report(step)
    out_of_time = False
    while step < loop.steps and not out_of_time:
        if lr is not None:
            for group in opt.param_groups:
                group["lr"] = lr(step)
        value = one_step(step)
        opt.zero_grad()
        value.backward()
        if loop.clip is not None:
            torch.nn.utils.clip_grad_norm_(params, loop.clip)
        opt.step()
        if sched is not None:
            sched.step()
        step += 1
        loss = value.item()
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.{max(loop.digits - 1, 0)}f}")
        out_of_time = bool(loop.max_minutes) and time.time() - started > 60 * loop.max_minutes
        if step % loop.every == 0 or step == loop.steps or out_of_time:
            report(step)
        if loop.checkpoint is not None and state is not None and (
                step % ckpt_every == 0 or step == loop.steps or out_of_time):
            torch.save(state() | {"step": step}, loop.checkpoint)
    bar.close()
    return Done(step, loss, round(time.time() - started, 1), out_of_time)
