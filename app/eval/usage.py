"""What this process and its children use (the recogniser runs in a process of its own): resident memory, open
files, threads; for the soak and `avcall bench serve`."""

from __future__ import annotations

import os

NOT_THE_CALL: set[str] = set()  # children that are not the call's (the soak's busy processes): not counted


def _processes() -> list[str]:
    """This process and its children, as /proc entries."""
    pids = [str(os.getpid())]
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as children:
                pids += [pid for pid in children.read().split() if pid not in NOT_THE_CALL]
    except OSError:
        pass
    return pids


def _sum(count) -> float:
    total = 0.0
    for pid in _processes():
        try:
            total += count(pid)
        except OSError:  # a child that ended between the listing and the reading
            pass
    return total


def _rss_mb(pid: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    return _sum(_rss_mb)


def open_fds() -> int:
    return int(_sum(lambda pid: len(os.listdir(f"/proc/{pid}/fd"))))


def threads() -> int:
    # the OS's threads: the native libraries' pools count too
    return int(_sum(lambda pid: len(os.listdir(f"/proc/{pid}/task"))))


# what a call's process spends its CPU on, by thread name (threading's names: the OS sees "python" for all);
# the keys of `avcall bench cluster`'s cores by part (docs/performance.md says what each holds)
PARTS = (("avcall-face_tracker", "face_tracking"), ("avcall-lip_features", "lip_features"),
         ("avcall-lip_gate", "lip_gate"), ("avcall-speech_enhancer", "suppressor"),
         ("avcall-captioner", "recogniser_feed"), ("avcall-annotate", "overlay"),
         ("avcall-talking_face", "talking_face"), ("avcall-sync_monitor", "sync_monitor"),
         ("avcall-emotion", "emotion"), ("avcall-mood", "emotion"), ("audio-decoder", "audio_decode"),
         ("video-decoder", "video_decode"), ("asyncio_", "encoders"),
         ("MainThread", "event_loop"), ("AsyncIO Thread", "event_loop"))
# threads threading does not know, by the name the OS has for them: the face mesh's graph runs on mediapipe's own
# pool ("mediapipe/<tid>"), which costs more than the tracker's thread that waits for it
NATIVE_PARTS = (("mediapipe", "face_tracking"),)


def _cpu_s(stat_path: str) -> float:
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (float(fields[11]) + float(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_part() -> dict[str, float]:
    """CPU seconds this process's live threads have spent so far, by the part of the call each runs (PARTS;
    "other_threads" for the rest: onnxruntime's and Ray's own; native pools by their OS name, NATIVE_PARTS), and
    its child processes' ("recogniser")."""
    import threading

    spent: dict[str, float] = {}
    for thread in threading.enumerate():
        part = next((what for prefix, what in PARTS if thread.name.startswith(prefix)), "other_threads")
        try:
            spent[part] = spent.get(part, 0.0) + _cpu_s(f"/proc/self/task/{thread.native_id}/stat")
        except (OSError, TypeError):  # a thread that ended meanwhile
            continue
    known = {t.native_id for t in threading.enumerate()}
    for task in os.listdir("/proc/self/task"):  # threads threading does not know (native libraries' pools)
        if int(task) not in known:
            try:
                with open(f"/proc/self/task/{task}/comm") as f:
                    comm = f.read()
                part = next((what for prefix, what in NATIVE_PARTS if comm.startswith(prefix)), "other_threads")
                spent[part] = spent.get(part, 0.0) + _cpu_s(f"/proc/self/task/{task}/stat")
            except OSError:
                continue
    children = [pid for pid in _processes() if pid != str(os.getpid())]
    for pid in children:
        try:
            spent["recogniser"] = spent.get("recogniser", 0.0) + _cpu_s(f"/proc/{pid}/stat")
        except OSError:
            continue
    return {part: round(s, 3) for part, s in spent.items()}
