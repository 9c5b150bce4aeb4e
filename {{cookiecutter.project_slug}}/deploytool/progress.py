"""What a long command shows as it goes: one line per step when it starts, its time when
it took long enough to notice, and the next command at the end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

SLOW = 2.0  # s: a step that took longer says how long


@contextmanager
def step(command: str, what: str) -> Iterator[None]:
    """``command: what ...`` now; ``command: what: N s`` once done, when it took a while."""
    print(f"{command}: {what} ...", flush=True)
    started = time.monotonic()
    yield
    seconds = time.monotonic() - started
    if seconds >= SLOW:
        print(f"{command}: {what}: {seconds:.0f} s", flush=True)


def say(command: str, line: str) -> None:
    print(f"{command}: {line}", flush=True)
