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
