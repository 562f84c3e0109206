"""The room commands explain themselves (issue 25): `avcall worker`, `avcall cluster up`, `serve --janus`."""

from __future__ import annotations

from tests.conftest import run_cli


def test_worker_and_cluster_help_explain_themselves():
    worker = run_cli("worker", "--help", timeout=60)
    assert worker.returncode == 0
    for word in ("Janus", "VideoRoom", "--feed", "avcall:<FEED>", "captions", "data channel"):
        assert word in worker.stdout, word
    cluster = run_cli("cluster", "--help", timeout=60)
    assert cluster.returncode == 0
    for word in ("Ray", "--workers", "--address", "--worker-cpus", "--worker-gpus", "/room", "--token", "spare"):
        assert word in cluster.stdout, word
    serve = run_cli("serve", "--help", timeout=60)
    assert "--janus" in serve.stdout and "/room" in serve.stdout


def test_cluster_up_off_loopback_needs_a_token():
    result = run_cli("cluster", "up", "--host", "0.0.0.0", timeout=60)
    assert result.returncode == 2 and "--token" in result.stderr, result.stderr


def test_worker_without_janus_is_one_line():
    result = run_cli("worker", "--janus", "http://127.0.0.1:1/janus", "--room", "1", "--feed", "2",
                     "--no-captions", timeout=120)
    assert result.returncode == 2, result.stderr
    assert "avcall: error: janus at http://127.0.0.1:1/janus" in result.stderr
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr, result.stderr
