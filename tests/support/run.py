"""Running programs from the tests, finding them, and waiting: one of each."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# git as the tests commit: a fixed identity, whatever the machine's config says.
GIT = ["git", "-c", "user.name=dj-layout tests", "-c", "user.email=tests@dj-layout.invalid"]


def run(argv: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a program, failing the test with its output when it fails."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, argv))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def tool(name: str) -> str:
    """A program the tests run: the tests' own pinned one (ruff, shellcheck, …), else from PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed: run the tests with tests/run.sh, which installs it"
    return found


def program(name: str, package: str) -> str:
    """A system program a test starts; missing, it fails saying which package has it."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert found, f"{name} is not installed: apt-get install {package} (tests/run.sh installs it)"
    return found


def poll_until(condition: Callable[[], object], what: str, timeout: float = 30, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something true, and return that; None after
    ``timeout`` seconds. An OSError counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30, interval: float = 0.1) -> Any:
    """As poll_until, but the test fails naming ``what`` when the time is up."""
    result = poll_until(condition, what, timeout, interval)
    assert result, f"{what}: not within {timeout:g} s"
    return result


def port_free(port: int, address: str = "127.0.0.1") -> bool:
    """Whether a server could bind ``port`` now (TIME_WAIT leftovers do not count, as for servers)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True
