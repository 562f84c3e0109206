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


def test_the_legs_of_an_overloaded_call_are_not_given_a_negative_rest():
    from avcall.app.bench_cluster import _legs

    held = [{"voice_delay_ms": 200, "sfu_only_delay_ms": 90, "worker_receive_buffer_ms": 20.0,
             "worker_audio_delay_ms": 45.0}]
    assert _legs(held)["rest"] == 45.0 and _legs(held)["added_by_the_worker"] == 110.0
    behind = [dict(held[0], worker_audio_delay_ms=4855.0)]  # seconds behind: past the envelope's lag search
    assert _legs(behind)["rest"] is None
