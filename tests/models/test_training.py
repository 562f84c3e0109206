"""The one training loop (models/training.py): a checkpoint is written, a rerun resumes at the saved step, the time
budget stops a run (checkpointed, so it goes on from there), clipping and the learning rate are applied, and
the evaluation rows land in the log."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from avcall.models.training import Best, Loop, cosine, resume, train_loop  # noqa: E402


def recipe(out, steps: int, **loop):
    """A one-weight regression trained through the loop, as a recipe does: resume, steps, evaluations."""
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = out / "checkpoint.pt"

    def restore(state: dict) -> None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])

    start = resume(ckpt, restore)
    seen = []

    def one_step(step: int) -> torch.Tensor:
        seen.append(step)
        x = torch.linspace(-1, 1, 8)[:, None]
        return ((model(x) - 3 * x) ** 2).mean()

    done = train_loop(one_step, opt, Loop(steps=steps, checkpoint=ckpt, log=out / "train.log", **loop),
                      start=start, evaluate=lambda step: {"weight": round(model.weight.item(), 4)},
                      state=lambda: {"model": model.state_dict(), "opt": opt.state_dict()})
    return start, seen, done, model


def rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "train.log").read_text().splitlines()]


def test_checkpoint_written_and_a_rerun_resumes_at_its_step(tmp_path):
    start, seen, done, _ = recipe(tmp_path, 4, every=2)
    assert (start, seen, done.step, done.out_of_time) == (0, [0, 1, 2, 3], 4, False)
    assert torch.load(tmp_path / "checkpoint.pt")["step"] == 4
    start, seen, done, model = recipe(tmp_path, 6, every=2)  # the same folder, more steps: goes on from 4
    assert (start, seen, done.step) == (4, [4, 5], 6)
    assert [r["step"] for r in rows(tmp_path)] == [2, 4, 6]
    assert all(set(r) == {"step", "loss", "weight", "seconds"} for r in rows(tmp_path))
    # the same six steps in one run end at the same weight: resuming loses nothing
    (tmp_path / "straight").mkdir()
    _, _, _, straight = recipe(tmp_path / "straight", 6, every=2)
    assert torch.equal(model.weight, straight.weight)


def test_the_time_budget_stops_the_run_checkpointed(tmp_path, monkeypatch):
    import avcall.models.training as training

    clock = iter(range(0, 10_000, 30))  # every look at the clock: 30 s later
    monkeypatch.setattr(training.time, "time", lambda: float(next(clock)))
    _, seen, done, _ = recipe(tmp_path, 100, every=50, max_minutes=1.0)
    assert done.out_of_time and done.step == len(seen) < 100
    assert torch.load(tmp_path / "checkpoint.pt")["step"] == done.step  # stopped: written, resumable
    assert rows(tmp_path)[-1]["step"] == done.step  # and measured


def test_checkpoints_at_their_own_cadence_and_evaluates_first(tmp_path):
    saved = []
    monkey = torch.save
    try:
        torch.save = lambda obj, path: saved.append(obj["step"])
        recipe(tmp_path, 5, every=1, ckpt_every=2, eval_first=True)
    finally:
        torch.save = monkey
    assert saved == [2, 4, 5]
    assert [r["step"] for r in rows(tmp_path)] == [0, 1, 2, 3, 4, 5]
    assert rows(tmp_path)[0]["loss"] is None


def test_clipping_and_the_learning_rate():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    lrs = []

    def one_step(step: int) -> torch.Tensor:
        lrs.append(opt.param_groups[0]["lr"])
        return 100 * w.sum()  # gradient 100

    train_loop(one_step, opt, Loop(steps=3, every=10, clip=1.0), lr=lambda step: cosine(1.0, step, 3, floor=0.1))
    assert lrs == [cosine(1.0, s, 3, floor=0.1) for s in range(3)] and lrs[0] == 1.0
    assert float(w) == pytest.approx(-sum(lrs))  # each step moved by lr x the clipped gradient (norm 1)
    assert cosine(2e-3, 3, 3, floor=0.1) == pytest.approx(2e-4) and cosine(1.0, 5, 3) == 0.0
    assert cosine(1e-3, 7, 10, 0.1) == 1e-3 * (0.1 + 0.45 * (1 + math.cos(math.pi * 7 / 10)))


def test_best_keeps_the_highest_and_marks_its_row():
    best, saves = Best(-1.0), []
    rows_ = [{"r": r} for r in (0.2, 0.1, 0.5)]
    kept = [best.offer(row["r"], row, lambda: saves.append(best.value)) for row in rows_]
    assert kept == [True, False, True] and saves == [0.2, 0.5] and best.value == 0.5
    assert [row.get("best") for row in rows_] == [True, None, True]


def test_the_recipes_arguments_load_no_torch():
    """`avcall --help` (every `avcall train` recipe's arguments) works without torch: the loop imports it when it
    runs."""
    import subprocess
    import sys

    code = ("import sys; from avcall.app.cli import build_parser; build_parser(); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
