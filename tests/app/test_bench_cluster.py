"""`avcall bench cluster`'s reading of a call's window (app/bench_cluster.py): a call started again inside it
is reported as such, not as figures from two calls' counters."""

from avcall.app.bench_cluster import restarted_in


def test_a_call_that_ran_through_the_window_was_not_restarted():
    assert not restarted_in(10.0, 40.0, [(2.0, 7)], 100, 100, {"frames_dropped": 3}, {"frames_dropped": 5})


def test_a_new_feed_another_process_or_counters_gone_back_mean_a_restart():
    assert restarted_in(10.0, 40.0, [(2.0, 7), (25.0, 9)], 100, 100, {}, {})  # subscribed to a new worker feed
    assert restarted_in(10.0, 40.0, [(2.0, 7)], 100, 101, {}, {})  # its worker process is another
    assert restarted_in(10.0, 40.0, [(2.0, 7)], 100, 100, {"audio_passthrough_samples": 9000},
                        {"audio_passthrough_samples": 640})  # its counters began again
