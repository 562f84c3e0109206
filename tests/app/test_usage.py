"""What a call's process spends its CPU on, by part (app/eval/usage.cpu_by_part): what `avcall bench cluster`
reports for each worker."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from avcall.app.eval.usage import cpu_by_part


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_stage_thread_and_a_child_process_are_counted_under_their_parts():
    before = cpu_by_part()
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.4\n"
                              "while time.process_time() < end: pass\ntime.sleep(5)"])
    try:
        thread = threading.Thread(target=_spin, args=(0.3,), name="avcall-face_tracker_0")
        thread.start()
        time.sleep(0.1)
        during = cpu_by_part()  # the thread is alive: its CPU is read from its own /proc entry
        thread.join()
        deadline = time.monotonic() + 10
        while cpu_by_part().get("recogniser", 0.0) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.1)
        after = cpu_by_part()
    finally:
        child.kill()
        child.wait()
    assert during.get("face_tracking", 0.0) > before.get("face_tracking", 0.0)
    assert after.get("recogniser", 0.0) >= 0.3  # the child process, as a worker's recogniser


def test_a_native_pool_thread_is_counted_by_its_os_name():
    """mediapipe's graph runs on its own threads ("mediapipe/<tid>" to the OS, unknown to `threading`): their
    CPU is the face tracker's, not "other_threads"."""
    import _thread
    import ctypes

    libc = ctypes.CDLL(None)
    named, done = threading.Event(), threading.Event()

    def native() -> None:  # a thread `threading` never hears of, named as mediapipe names its pool
        libc.prctl(15, b"mediapipe/1", 0, 0, 0)  # PR_SET_NAME
        named.set()
        _spin(0.3)
        done.set()
        time.sleep(2)

    before = cpu_by_part()
    _thread.start_new_thread(native, ())
    named.wait(5)
    done.wait(10)
    after = cpu_by_part()
    assert after.get("face_tracking", 0.0) - before.get("face_tracking", 0.0) >= 0.2
    assert after.get("other_threads", 0.0) - before.get("other_threads", 0.0) < 0.1
