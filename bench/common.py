"""What bench/benchmark.py and bench/security.py share with the tests: the project user,
its venv, baked projects and their sandbox stacks (tests/support/), and the tables both
print. Run from the template's root as modules (python -m bench.benchmark), as root like
the tests: the project user is created if needed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import (
    TEMPLATE,
    Stack,
    ensure_project_user,
    ensure_project_venv,
    local_settings,
    run,
    tool,
)

__all__ = ["TEMPLATE", "Stack", "ensure_project_user", "ensure_project_venv", "local_settings", "run", "tool"]

VENV_NAME = "env3.11"  # the default python_version's venv name in a baked project
# Debian packages the scripts run, installed when missing (as tests/run.sh does).
PACKAGES = {
    "nginx": "nginx",
    "wrk": "wrk",
    "logrotate": "logrotate",
    "git": "git",
    "openssl": "openssl",
    "systemd-analyze": "systemd",
    "taskset": "util-linux",
}


def require_root(script: str) -> None:
    if os.geteuid() != 0:
        sys.exit(
            f"{script}: run it as root, like the tests (it creates the project user and runs every "
            f"server as that user): sudo .venv/bin/python -m bench.{script.removesuffix('.py')}"
        )


def ensure_programs(*names: str) -> None:
    """Install the Debian packages of missing programs, as tests/run.sh does."""
    missing = [PACKAGES[name] for name in names if shutil.which(name) is None]
    if "initdb" in names and not sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        missing.append("postgresql")  # its programs are not on PATH
    if missing:
        print(f"installing {' '.join(missing)} (apt-get)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port (read from /proc: connecting would disturb a server)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return False
    return True


def require_free(ports: Sequence[int], what: str) -> None:
    taken = [port for port in ports if not port_free(port)]
    if taken:
        sys.exit(f"ports {taken} ({what}) are in use: stop what listens there (ss -ltnp), nothing was started")


def wait_bindable(ports: Sequence[int], timeout: float = 120) -> None:
    """Wait until each port can be bound without SO_REUSEADDR, as `deploytool up` checks them:
    after a benchmark, the app port's closed connections stay in TIME_WAIT for a minute."""
    deadline = time.monotonic() + timeout
    told = False
    for port in ports:
        while True:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                    break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                sys.exit(f"port {port} is still taken after {timeout:.0f} s (ss -tanp | grep {port})")
            if not told:
                print(f"waiting for port {port} to leave TIME_WAIT (a previous run's connections) ...", flush=True)
                told = True
            time.sleep(1)


@dataclass
class Baked:
    """A baked project, owned by the project user, its venv the shared one of the tests."""

    project: Path
    user: str
    seconds: float  # cookiecutter's own run, its post-gen hook (deploytool init) included

    @property
    def stack(self) -> Stack:
        return Stack(self.project, self.user)


def bake(user: str, venv: Path, **answers: Any) -> Baked:
    """`cookiecutter --no-input` as a user types it (timed), into a folder the project user
    owns; then the shared venv as the project's venv (as tests/conftest.py bakes)."""
    base = Path(tempfile.mkdtemp(prefix="dj-layout-bench-"))
    cookiecutter = shutil.which("cookiecutter", path=str(Path(sys.executable).parent)) or "cookiecutter"
    context = [f"{key}={value}" for key, value in {"user": user, **answers}.items()]
    try:
        started = time.monotonic()
        run([cookiecutter, "--no-input", "--output-dir", base, TEMPLATE, *context])
        seconds = time.monotonic() - started
        (project,) = [path for path in base.iterdir() if path.is_dir()]
        (project / VENV_NAME).symlink_to(venv)
        run(["chown", "-R", "-h", f"{user}:{user}", base])
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return Baked(project, user, seconds)


VISITS = 200  # rows in the Visit table before /visits/ is measured: it lists the 50 latest


def add_visits(stack: Stack) -> None:
    """The rows /visits/ lists, written before it is measured (the home page writes one a
    visit): the page the targets name is the list of 50, not a list of one."""
    slug = stack.answers["project_slug"]
    code = f"from {slug}.models import Visit; Visit.objects.bulk_create(Visit() for _ in range({VISITS}))"
    stack.as_user(stack.project / VENV_NAME / "bin/python", "manage.py", "shell", "-c", code)


@contextmanager
def stack_up(baked: Baked) -> Iterator[tuple[Stack, float]]:
    """`deploytool up` as the project user (timed until it has seen /health/ answer 200 over
    HTTPS); `deploytool down` and the folder removed whatever happens."""
    stack = baked.stack
    try:
        started = time.monotonic()
        stack.deploytool("up")
        seconds = time.monotonic() - started
        yield Stack(baked.project, baked.user), seconds  # env.conf now names the sandbox
    finally:
        stack.deploytool("down", check=False)
        left = stack.listening()
        shutil.rmtree(baked.project.parent, ignore_errors=True)
        if left:
            print(f"warning: ports still listening after down: {left}", file=sys.stderr)


def as_user(
    user: str, *argv: str | Path, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a program as the project user; the result whatever its exit status."""
    command = ["runuser", "-u", user, "--", *map(str, argv)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    """A plain-text table; columns listed in ``right`` are right-aligned (numbers)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    return "\n".join([line(list(headers)), line(["-" * width for width in widths]), *map(line, cells)])


def prepare(script: str, programs: Sequence[str], ports: Sequence[int], what: str) -> tuple[str, Path]:
    """What both scripts do first: as root, the programs they run, the project user and its
    venv, and their ports free (and out of TIME_WAIT). Returns the user and the venv."""
    require_root(script)
    ensure_programs(*programs)
    user, venv = ensure_project_user(), ensure_project_venv()
    require_free(ports, f"the {what}'s")
    wait_bindable(ports)
    return user, venv
