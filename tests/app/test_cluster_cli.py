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
    for word in ("Ray", "--workers", "--address", "--worker-cpus", "--worker-gpus", "/room", "--token", "spare",
                 "--calls-per-worker", "share its model"):
        assert word in " ".join(cluster.stdout.split()), word  # words argparse wraps across lines
    serve = run_cli("serve", "--help", timeout=60)
    assert "--janus" in serve.stdout and "/room" in serve.stdout


def test_a_worker_declares_what_its_k_calls_need():
    """K calls to a worker: K times a call's CPUs, the GPUs as given, room for K runs besides status calls; a
    local head has CPUs for enough workers for its call slots and a spare worker."""
    from avcall.app.cluster import STATUS_CALLS, ClusterConfig, local_cpus, worker_resources

    one = ClusterConfig(janus="http://127.0.0.1:1/janus", workers=2)
    assert worker_resources(one) == {"num_cpus": 1.0, "num_gpus": 0.0, "max_concurrency": 1 + STATUS_CALLS}
    assert local_cpus(one) == 3  # two one-call workers and the spare
    four = ClusterConfig(janus="", workers=5, calls_per_worker=4, worker_cpus=0.5, worker_gpus=0.25)
    assert worker_resources(four) == {"num_cpus": 2.0, "num_gpus": 0.25, "max_concurrency": 4 + STATUS_CALLS}
    assert local_cpus(four) == 6  # two workers for five calls, one spare: three of 4 x 0.5 CPUs
    assert local_cpus(ClusterConfig(janus="", workers=2, calls_per_worker=2, spare=False)) == 2


def test_cluster_up_needs_a_slot_per_worker():
    result = run_cli("cluster", "up", "--calls-per-worker", "0", timeout=60)
    assert result.returncode == 2 and "--calls-per-worker" in result.stderr, result.stderr


def test_cluster_up_off_loopback_needs_a_token():
    result = run_cli("cluster", "up", "--host", "0.0.0.0", timeout=60)
    assert result.returncode == 2 and "--token" in result.stderr, result.stderr


def test_worker_without_janus_is_one_line():
    result = run_cli("worker", "--janus", "http://127.0.0.1:1/janus", "--room", "1", "--feed", "2",
                     "--no-captions", timeout=120)
    assert result.returncode == 2, result.stderr
    assert "avcall: error: janus at http://127.0.0.1:1/janus" in result.stderr
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr, result.stderr


def test_a_local_head_with_more_call_slots_than_cores_says_so():
    """A call took about one core of a 2-core node, where two did not keep up: a local head given more calls than
    its cores can run (one core left for Janus, Ray and the page) tells the user; a remote cluster's slots are
    whatever its nodes declare."""
    from avcall.app.cluster import ClusterConfig, overcommitted

    two = ClusterConfig(janus="", workers=2)
    warning = overcommitted(two, cores=2)
    assert warning and "2 call slots" in warning and "2 cores" in warning and "--workers" in warning
    assert overcommitted(ClusterConfig(janus="", workers=1), cores=2) is None
    assert overcommitted(ClusterConfig(janus="", workers=7), cores=8) is None
    assert overcommitted(ClusterConfig(janus="", workers=2, address="10.0.0.1:6379"), cores=2) is None
