"""How many app server processes this host gets: from its cores and its memory, unless
env.conf's APP_WORKERS says otherwise.

One process per core, and one more: a process serving a page runs Python nearly all the
time it holds a request (measured one request at a time through nginx, SQLite: the app's
CPU is 93-100% of each request's time), so one spare covers the others' waits on the
database or the network; a second one per core added ~32 MB a process and no throughput
on a 2-core host (bench/benchmark.py, paired rounds). A database on another host makes
the waits longer: raise APP_WORKERS there.
Within half the memory (the rest is the database's, the cache's, nginx's and the page
cache's), at PER_WORKER_MB each: a Django worker's resident size with headroom.
Never fewer than two, so that a graceful reload always has one serving.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DeployError

PER_WORKER_MB = 96
MIN_WORKERS, MAX_WORKERS = 2, 256


def host() -> tuple[int, int]:
    """This host's cores (all of them: a taskset or cpuset of the moment does not resize
    the config) and its memory in MB (MemTotal)."""
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return os.cpu_count() or 1, memory_kb // 1024


def app_workers(cores: int, memory_mb: int) -> int:
    by_memory = memory_mb // 2 // PER_WORKER_MB
    return max(MIN_WORKERS, min(cores + 1, by_memory, MAX_WORKERS))


def why(cores: int, memory_mb: int) -> str:
    """The rule with this host's figures, for env.conf's comment."""
    workers = app_workers(cores, memory_mb)
    return f"one per core of {cores} and one more, within half of {memory_mb} MB at {PER_WORKER_MB} MB each: {workers}"


def workers_setting(value: str) -> int | None:
    """APP_WORKERS of env.conf (or init --app-workers): empty for the host's figure."""
    if value == "":
        return None
    if not value.isdigit() or not MIN_WORKERS <= int(value) <= MAX_WORKERS:
        raise DeployError(
            f"app workers {value!r}: give a number of processes from {MIN_WORKERS} to {MAX_WORKERS} "
            "(or nothing, for one per core and one more, within half the memory)"
        )
    return int(value)
