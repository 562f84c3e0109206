"""Measuring on one core, as the benchmarks and the evaluations' real-time factors do: the process pinned to one
CPU core (numeric libraries to one thread), and the CPU's name for the reports."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager


def pin_to_one_core() -> int | None:
    """Restrict this process (and the threads it starts later) to one CPU core; returns the core."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core

def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

@contextmanager
def one_core() -> Iterator[int | None]:
    """The process pinned to one CPU core and numeric libraries to one thread; both restored after."""
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(1)
    except ImportError:
        limits = None
    core = pin_to_one_core()
    try:
        yield core
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
        if limits is not None:
            limits.restore_original_limits()
