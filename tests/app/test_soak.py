"""`avcall soak` as a smoke check: a minute of the looping call at real time, sampled, with soak.json and
soak.png written. (The 30-minute run is a benchmark: `avcall soak --minutes 30 --out bench/soak`.)"""

from __future__ import annotations

import json

from tests.conftest import run_cli

SUMMARY = {"rss_growth_pct", "max_skew_frames", "audio_samples_dropped", "p95_latency_ms_by_stage", "stalls",
           "frames_dropped", "audio_passthrough_samples", "fd_growth", "thread_growth", "loops"}
SAMPLE = {"t_s", "rss_mb", "fds", "threads", "latency_ms", "skew_frames", "frames_dropped",
          "audio_passthrough_samples", "stalls"}


def test_help_explains_the_soak():
    result = run_cli("soak", "--help")
    assert result.returncode == 0
    for word in ("--minutes", "--out", "soak.json", "soak.png", "rss_growth_pct", "max_skew_frames", "stalls"):
        assert word in result.stdout


def test_a_half_minute_soak(tmp_path):
    result = run_cli("soak", "--minutes", "0.5", "--every", "2", "--out", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(" min] rss ") >= 12  # a progress line per sample
    report = json.loads((tmp_path / "soak.json").read_text())
    summary, samples = report["summary"], report["samples"]
    assert report["complete"] and SUMMARY <= set(summary) and len(samples) >= 12
    assert all(SAMPLE <= set(s) for s in samples)
    assert samples[-1]["t_s"] >= 27 and summary["loops"] >= 2  # half a minute of a call of a few seconds, looped
    stages = set(summary["p95_latency_ms_by_stage"])
    assert {"face_tracker", "lip_features", "captioner", "annotate"} <= stages  # the whole call ran
    assert summary["audio_samples_dropped"] == 0  # every sample of the voice that went in came out
    assert samples[-1]["audio_out_samples"] > 25 * 16_000  # the voice of the whole half minute came out
    assert summary["fd_growth"] == 0  # nothing opened per loop and left open
    assert summary["max_skew_frames"] is not None and summary["rss_growth_pct"] is not None
    assert (tmp_path / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_runs_busy_processes_beside_the_call_and_ends_them():
    from avcall.app.eval.usage import _processes
    from avcall.app.soak import busy_processes

    with busy_processes(2, 60) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
        assert not {str(p.pid) for p in procs} & set(_processes())  # not counted as the call's memory or files
    assert all(p.poll() is not None for p in procs)


def test_load_is_bounded(tmp_path):
    assert "--load" in run_cli("soak", "--help").stdout
    result = run_cli("soak", "--minutes", "1", "--load", "99", "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "--load" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
