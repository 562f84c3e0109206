"""`avcall soak`: the whole call for minutes or hours at real time, sampled as it goes.

A looping call (the demo's noisy call, made at 30 fps, or `--input`) plays at real time through the stages
every call is built with (`build_call`: tracking, lip features, captions, the enhancer, the sync monitor,
the overlay, and whatever stage joins the builder later), with the talking face rendered beside them when its
weights ship. Every `every_s` seconds a sample records the resident memory, open file descriptors and threads
of the process and its children (the recogniser's), each stage's latency p50/p95 (its telemetry's recent
window), the lag of the outputs behind the session clock, their audio-video skew, the video frames dropped,
the audio passed through and the stalls.
`soak.json` gets the samples and a summary, `soak.png` plots them.

Skew is what a receiver that plays the outputs as they leave sees (the served call's tracks do; the RTP
sender's reports map each frame to the time it was sent): per sample, the median lag of the call's video
behind its pts minus that of its audio, in frames of the clip's rate. A stall is an output (audio, video)
that sent nothing for `STALL_S`. Audio samples dropped: the samples that entered the call minus those that
left it, at the end (after the last ones drained). The talking face's lag (its 60 ms look-ahead and the
rendering) is reported beside the skew, not in it: it is the lag of a different picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from avcall.pipelines.call import Transport, build_call, talking_face
from avcall.pipelines.clock import SessionClock
from avcall.pipelines.errors import InputError
from avcall.pipelines.frames import AudioFrame, Frame, VideoFrame
from avcall.pipelines.load import AudioProbe
from avcall.pipelines.runner import Pipeline
from avcall.pipelines.sinks.atomic import write_atomic
from avcall.pipelines.sources.loop import LoopSource
from avcall.pipelines.stage import Stage

from .eval.data import write_report
from .eval.usage import NOT_THE_CALL, open_fds, rss_mb, threads
from .outputs import StagedOutput
from .process import ProcessConfig, call_config

FPS = 30
STALL_S = 0.5  # an output that sends nothing for this long has stalled (a call's outputs come every 10-40 ms)
WARMUP_S = 120.0  # memory is compared from here on (models and caches settle); at most a quarter of the run
SAVE_EVERY_S = 60.0  # soak.json is rewritten this often, so a run that dies still leaves its samples
MAX_LOAD = 16  # busy processes at most: other work beside the call, not a fork bomb
# one busy process: a core's worth of pure Python until the soak kills it, its parent goes or its time is up
BUSY = ("import os, sys, time\n"
        "parent, end = os.getppid(), time.monotonic() + float(sys.argv[1])\n"
        "while os.getppid() == parent and time.monotonic() < end:\n"
        "    sum(range(10_000))\n")


@dataclass
class SoakConfig:
    minutes: float
    out: Path
    every_s: float = 5.0
    warmup_s: float | None = None  # None: WARMUP_S, or a quarter of the run if that is shorter
    input: Path | None = None  # None: the demo's noisy call, made at FPS
    avatar: bool = True  # the talking face beside the call, when its weights ship
    load: int = 0  # busy processes beside the call (a laptop with other work on it)


# --- the outputs, timed as they leave -------------------------------------------------------------------------
@dataclass
class Stream:
    """One output of the call: how far behind the clock its frames leave, how many, and its stalls."""

    lags_ms: list[float] = field(default_factory=list)  # since the last sample
    frames: int = 0
    samples: int = 0  # audio samples
    stalls: int = 0
    last: float | None = None  # time.monotonic() of the last frame out
    _stalled: bool = False

    def depart(self, now: float, lag_s: float, samples: int = 0) -> None:
        if self.last is not None and now - self.last > STALL_S and not self._stalled:
            self.stalls += 1
        self.last, self._stalled = now, False
        self.frames += 1
        self.samples += samples
        self.lags_ms.append(1e3 * lag_s)

    def check(self, now: float) -> None:
        """A stall is counted while it lasts, not only once the stream is back."""
        if self.last is not None and now - self.last > STALL_S and not self._stalled:
            self.stalls += 1
            self._stalled = True

    def take(self) -> list[float]:
        lags, self.lags_ms = self.lags_ms, []
        return lags


class Meter(Stage):
    """A tap timing the frames of `streams` (by type) on the session clock; passes on those of `keep`."""

    def __init__(self, name: str, clock: SessionClock, streams: dict[type, Stream],
                 keep: tuple[type, ...] = ()) -> None:
        super().__init__(name)
        self.accepts = tuple(streams)
        self.clock, self.streams, self.keep = clock, streams, keep

    async def process(self, frame: Frame) -> Sequence[Frame]:
        samples = len(frame.samples) if isinstance(frame, AudioFrame) else 0
        self.streams[type(frame)].depart(time.monotonic(), self.clock.now() - frame.pts, samples)
        return [frame] if isinstance(frame, self.keep) else []


@dataclass
class Outputs:
    audio_in: Stream = field(default_factory=Stream)
    audio: Stream = field(default_factory=Stream)
    video: Stream = field(default_factory=Stream)
    avatar: Stream = field(default_factory=Stream)


# --- the process, sampled -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def busy_processes(n: int, seconds: float):
    """`n` processes spinning a core each beside the call, killed on the way out (and gone by themselves
    after `seconds`, or when this process dies)."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY, str(seconds)]) for _ in range(n)]
    NOT_THE_CALL.update(str(p.pid) for p in procs)
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        NOT_THE_CALL.difference_update(str(p.pid) for p in procs)


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 2) if values else None


def take_sample(t: float, pipeline: Pipeline, outputs: Outputs, loops: int) -> dict:
    now = time.monotonic()
    for stream in (outputs.audio, outputs.video, outputs.avatar):
        stream.check(now)
    video, audio, avatar = _median(outputs.video.take()), _median(outputs.audio.take()), _median(outputs.avatar.take())
    counts = pipeline.incidents.summary()["counts"]
    stages = {}
    for stage in pipeline.stages:
        if not isinstance(stage, Meter):
            latency = stage.telemetry.summary()["latency_ms"]
            stages[stage.name] = {"p50": round(latency["p50"], 2), "p95": round(latency["p95"], 2)}
    return {
        "t_s": round(t, 1), "rss_mb": round(rss_mb(), 1), "fds": open_fds(), "threads": threads(),
        "latency_ms": stages,
        "video_lag_ms": video, "audio_lag_ms": audio, "avatar_lag_ms": avatar,
        "skew_frames": round((video - audio) * FPS / 1e3, 3) if video is not None and audio is not None else None,
        "frames_dropped": counts.get("frames_dropped", 0),
        "audio_passthrough_samples": counts.get("audio_passthrough_samples", 0),
        "audio_in_samples": outputs.audio_in.samples, "audio_out_samples": outputs.audio.samples,
        "video_out_frames": outputs.video.frames, "avatar_frames": outputs.avatar.frames,
        "stalls": outputs.audio.stalls + outputs.video.stalls + outputs.avatar.stalls,
        "loops": loops,
        "load_level": _load_level(pipeline),
        "loadavg_1min": round(os.getloadavg()[0], 2),  # the machine's, beside --load: what the call shared it with
        "skipped": _skipped(counts),
    }


def _load_level(pipeline: Pipeline) -> int | None:
    """How much optional work the call is shedding now (see pipelines/load.py), None if it never does."""
    return next((s.shedder.level for s in pipeline.stages if isinstance(s, AudioProbe)), None)


def _skipped(counts: dict) -> dict[str, int]:
    return {kind.removeprefix("shed:"): n for kind, n in counts.items() if kind.startswith("shed:")}


def summarise(samples: list[dict], warmup_s: float, outputs: Outputs, pipeline: Pipeline) -> dict:
    settled = [s for s in samples if s["t_s"] >= warmup_s] or samples[-1:]
    base = settled[0]
    skews = [abs(s["skew_frames"]) for s in samples if s["skew_frames"] is not None]
    p95: dict[str, float] = {}
    for s in samples:
        for name, lat in s["latency_ms"].items():
            p95[name] = max(p95.get(name, 0.0), lat["p95"])
    counts = pipeline.incidents.summary()["counts"]
    return {
        "minutes": round(samples[-1]["t_s"] / 60, 2) if samples else 0.0,
        "warmup_s": warmup_s,
        "rss_mb_at_warmup": base["rss_mb"],
        "rss_growth_pct": round(100 * (max(s["rss_mb"] for s in settled) - base["rss_mb"]) / base["rss_mb"], 2),
        "fd_growth": max(s["fds"] for s in settled) - base["fds"],
        "thread_growth": max(s["threads"] for s in settled) - base["threads"],
        "max_skew_frames": round(max(skews), 3) if skews else None,
        "audio_samples_dropped": outputs.audio_in.samples - outputs.audio.samples,
        "audio_passthrough_samples": counts.get("audio_passthrough_samples", 0),
        "frames_dropped": counts.get("frames_dropped", 0),
        "p95_latency_ms_by_stage": {name: round(v, 2) for name, v in p95.items()},  # the worst recent p95 seen
        "stalls": outputs.audio.stalls + outputs.video.stalls + outputs.avatar.stalls,
        "avatar_lag_ms_p50": _median([s["avatar_lag_ms"] for s in samples if s["avatar_lag_ms"] is not None]),
        "loops": samples[-1]["loops"] if samples else 0,
        "max_load_level": max((s["load_level"] or 0 for s in samples), default=0),
        "loadavg_1min_median": _median([s["loadavg_1min"] for s in samples]),
        "skipped": _skipped(counts),  # optional work shed under load, by kind
        "incidents": counts,
    }


# --- the run ------------------------------------------------------------------------------------------------------
def make_loop_clip(folder: Path) -> Path:
    """The demo's noisy call at FPS (text-to-speech voices), else a synthetic clip (no face, no speech)."""
    from .fixtures import make_call, write_synthetic_clip

    path = folder / "call.mp4"
    if make_call(path, fps=FPS) is None:
        print("avcall soak: no text-to-speech engine: looping a synthetic clip (no face, no speech)", file=sys.stderr)
        asyncio.run(write_synthetic_clip(path, 10.0, fps=FPS))
    return path


def _pipeline(clip: Path, cfg: SoakConfig, clock: SessionClock, outputs: Outputs) -> tuple[Pipeline, LoopSource]:
    from avcall.pipelines.features import available, default_enhancer

    source = LoopSource(clip, clock=clock)
    info = source.info
    if not info.has_audio:
        raise InputError(f"{clip}: a soak needs a call with a voice (this file has no audio)")
    call_cfg = ProcessConfig(input=clip, outdir=cfg.out, enhance=default_enhancer(), captions=True,
                             emotion=available("emotion"))  # every stage that ships
    video_size = (info.width, info.height) if info.has_video else None
    call = build_call(call_config(call_cfg),
                      Transport(clock, video_size, info.fps, has_audio=True, live=True))
    stages = [Meter("soak_in", clock, {AudioFrame: outputs.audio_in}, keep=(AudioFrame,)), *call.stages,
              Meter("soak_out", clock, {AudioFrame: outputs.audio, VideoFrame: outputs.video}, keep=(AudioFrame,))]
    if cfg.avatar and available("talking_face"):
        face = talking_face(None)
        face.accepts = (AudioFrame,)  # beside the call: it hears the voice, the camera's frames are not its own
        face.shedder = call.shedder  # ... and its frames thin out with the call's other optional work
        stages += [face, Meter("soak_avatar", clock, {VideoFrame: outputs.avatar})]
    return Pipeline([source], stages, live=True), source


async def soak(cfg: SoakConfig, clip: Path, log=print) -> dict:
    clock = SessionClock()
    outputs = Outputs()
    pipeline, source = _pipeline(clip, cfg, clock, outputs)
    seconds = cfg.minutes * 60
    warmup_s = cfg.warmup_s if cfg.warmup_s is not None else min(WARMUP_S, seconds / 4)
    log(f"avcall soak: {cfg.minutes:g} min of {clip.name} looping at real time through "
        f"{', '.join(pipeline.describe())}" + (f", {cfg.load} busy process(es) beside it" if cfg.load else ""))
    with busy_processes(cfg.load, seconds + 600):
        return await _run(cfg, pipeline, source, outputs, seconds, warmup_s, log)


async def _run(cfg: SoakConfig, pipeline: Pipeline, source: LoopSource, outputs: Outputs, seconds: float,
               warmup_s: float, log) -> dict:
    run = asyncio.ensure_future(pipeline.run())
    samples: list[dict] = []
    while pipeline.last_input is None and not run.done():  # models load first: the clock starts with the call
        await asyncio.sleep(0.05)
    began = time.monotonic()
    saved = began
    try:
        while not run.done() and time.monotonic() - began < seconds:
            await asyncio.wait([run], timeout=min(cfg.every_s, seconds - (time.monotonic() - began)))
            if run.done():
                break
            samples.append(take_sample(time.monotonic() - began, pipeline, outputs, source.loops))
            log(_progress(samples[-1]))
            if time.monotonic() - saved > SAVE_EVERY_S:
                saved = time.monotonic()
                _save(cfg.out, cfg, samples, summarise(samples, warmup_s, outputs, pipeline), final=False)
        pipeline.end_input()
        await run  # drains: every sample that went in comes out, or counts as dropped
    finally:
        if not run.done():
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
    if not samples:
        raise InputError("the soak ended before its first sample: run it for longer than --every")
    summary = summarise(samples, warmup_s, outputs, pipeline)
    _save(cfg.out, cfg, samples, summary, final=True)
    return summary


def _progress(s: dict) -> str:
    skew = "-" if s["skew_frames"] is None else f"{s['skew_frames']:+.2f}"
    return (f"[{s['t_s'] / 60:5.1f} min] rss {s['rss_mb']:.0f} MB, fds {s['fds']}, threads {s['threads']}, "
            f"skew {skew} frames, dropped {s['frames_dropped']}, audio passed {s['audio_passthrough_samples']}, "
            f"stalls {s['stalls']}, loops {s['loops']}, load level {s['load_level']}")


def _save(out: Path, cfg: SoakConfig, samples: list[dict], summary: dict, final: bool) -> None:
    config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    report = {"config": config, "complete": final, "cpus": os.cpu_count(), "summary": summary, "samples": samples}
    write_report(out / "soak.json", report)
    if final:
        plot(samples, out / "soak.png")


def plot(samples: list[dict], path: Path) -> bool:
    """The series over time, four panels; False (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("avcall soak: no plot: matplotlib is not installed (pip install -e '.[eval]')", file=sys.stderr)
        return False
    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    ax = axes[0]
    ax.plot(t, [s["rss_mb"] for s in samples], label="resident memory (MB)")
    ax.set_ylabel("MB")
    twin = ax.twinx()
    twin.plot(t, [s["fds"] for s in samples], "g--", label="open files")
    twin.plot(t, [s["threads"] for s in samples], "r:", label="threads")
    twin.set_ylabel("count")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)
    for name in samples[-1]["latency_ms"]:
        axes[1].plot(t, [s["latency_ms"].get(name, {}).get("p95") for s in samples], label=name)
    axes[1].set_ylabel("latency p95 (ms)")
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=7, ncol=3)
    axes[2].plot(t, [s["skew_frames"] for s in samples], label="audio-video skew (frames)")
    axes[2].axhline(1, color="grey", lw=0.5)
    axes[2].axhline(-1, color="grey", lw=0.5)
    axes[2].set_ylabel("frames")
    axes[2].legend(fontsize=8)
    axes[3].plot(t, [s["frames_dropped"] for s in samples], label="video frames dropped")
    axes[3].plot(t, [s["audio_passthrough_samples"] / 160 for s in samples], label="audio hops passed through")
    axes[3].set_ylabel("count (cumulative)")
    axes[3].set_xlabel("minutes")
    axes[3].legend(loc="upper left", fontsize=8)
    stalls = axes[3].twinx()  # a handful at most: on their own scale
    stalls.plot(t, [s["stalls"] for s in samples], "r--", label="stalls")
    stalls.set_ylabel("stalls")
    stalls.legend(loc="lower right", fontsize=8)
    fig.suptitle("avcall soak", fontsize=10)
    fig.tight_layout()
    write_atomic(path, lambda partial: fig.savefig(partial, dpi=80, format="png"))
    plt.close(fig)
    return True


def run_soak(cfg: SoakConfig) -> dict:
    if cfg.minutes <= 0 or cfg.every_s <= 0:
        raise InputError("--minutes and --every must be positive")
    if not 0 <= cfg.load <= MAX_LOAD:
        raise InputError(f"--load: 0 to {MAX_LOAD} busy processes")
    with StagedOutput(cfg.out):  # a writable folder, checked before minutes of work
        pass
    with tempfile.TemporaryDirectory(prefix="avcall-soak-") as scratch:
        clip = cfg.input or make_loop_clip(Path(scratch))
        return asyncio.run(soak(cfg, clip, log=lambda line: print(line, flush=True)))


def add_parser(commands) -> None:
    p = commands.add_parser("soak", help="the whole call for N minutes at real time: memory, latency, skew, stalls",
                            description="Loop a call (the demo's noisy call at 30 fps, or --input) at real time "
                            "through the whole pipeline (tracking, lip features, captions, the enhancer, the sync "
                            "monitor, the overlay, the talking face beside them: every stage whose weights ship) "
                            "and sample, every few seconds: resident memory, open files, threads, latency p50/p95 "
                            "per stage, the audio-video skew of the outputs, video frames dropped, audio passed "
                            "through, stalls. Writes OUT/soak.json (the samples and a summary: rss_growth_pct "
                            "after the warm-up, max_skew_frames, audio_samples_dropped, p95_latency_ms_by_stage, "
                            "stalls) and OUT/soak.png, and prints a line per sample.")
    p.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where soak.json and soak.png go")
    p.add_argument("--every", type=float, default=5.0, metavar="S", help="seconds between samples (default 5)")
    p.add_argument("--warmup", type=float, metavar="S", help="seconds before memory growth is counted "
                   f"(default {WARMUP_S:.0f}, or a quarter of a shorter run)")
    p.add_argument("--input", type=Path, help="the call to loop, any file `avcall process` takes (default: the "
                   "demo's noisy call, made on the spot)")
    p.add_argument("--no-avatar", action="store_true", help="leave the talking face out")
    p.add_argument("--load", type=int, default=0, metavar="N", help="run N busy processes (a core each) beside "
                   f"the call, as other work on a laptop; killed at the end (at most {MAX_LOAD}, default 0)")


def cmd_soak(args) -> int:
    s = run_soak(SoakConfig(minutes=args.minutes, out=args.out, every_s=args.every, warmup_s=args.warmup,
                            input=args.input, avatar=not args.no_avatar, load=args.load))
    print(f"soak: {s['minutes']} min, rss growth {s['rss_growth_pct']}% after {s['warmup_s']:.0f} s, "
          f"max skew {s['max_skew_frames']} frames, audio samples dropped {s['audio_samples_dropped']}, "
          f"stalls {s['stalls']}, video frames dropped {s['frames_dropped']}; wrote {args.out / 'soak.json'}")
    return 0
