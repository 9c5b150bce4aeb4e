"""`deploytool logs [app|nginx|services|worker|jobs|backup|deploy|all] [-f] [-n N] [--hosts ...]`: this
install's logs, from its log folder (logs/), as the project user.

The last N lines of each file of the chosen kind, each line prefixed with its file's name
when there are several; with -f it then follows them as they grow and across a rotation
(logrotate renames the file and the writer reopens a new one: the new one is read from its
start). With --hosts the same command runs on each host over SSH (the fleet's rules) and
every line is prefixed with the host's name.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import fleet
from .errors import DeployError
from .layout import Install

# Which files of logs/ each kind reads (shell patterns).
KINDS: dict[str, tuple[str, ...]] = {
    "app": ("uwsgi.log", "gunicorn.*.log", "supervisor-app*.log"),
    "nginx": ("nginx.*.log",),
    "services": ("postgresql*.log", "redis*.log", "memcached*.log", "supervisor*.log"),
    "worker": ("celery.log", "supervisor-celery.log"),
    "jobs": ("backup.log", "clearsessions.log", "watch.log"),
    "backup": ("backup.log",),
    "deploy": ("deploy.log",),
    "all": ("*.log",),
}
POLL = 0.2  # s between looks at the files when following


def files(install: Install, kind: str) -> list[Path]:
    """The log files of ``kind`` that exist, by name (rotated .1/.gz copies are not read)."""
    found = {path for pattern in KINDS[kind] for path in install.log_dir.glob(pattern) if path.is_file()}
    return sorted(found)


def last_lines(path: Path, count: int) -> tuple[list[str], int]:
    """The last ``count`` lines of a file, and the offset its end is at."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = size = handle.tell()
        data = b""
        while size and data.count(b"\n") <= count:
            step = min(size, 65536)
            size -= step
            handle.seek(size)
            data = handle.read(step) + data
    lines = data.decode(errors="replace").splitlines()
    return lines[-count:] if count else [], end


@dataclass
class Followed:
    """One file being followed: where its reading is, and which file (inode) that is."""

    path: Path
    offset: int
    inode: int
    partial: str = ""

    def new_lines(self) -> list[str]:
        try:
            info = self.path.stat()
        except FileNotFoundError:  # between logrotate's rename and the writer's reopen
            return []
        if info.st_ino != self.inode or info.st_size < self.offset:  # rotated or truncated
            self.inode, self.offset = info.st_ino, 0
        if info.st_size == self.offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data.decode(errors="replace")).split("\n")
        return lines


def show(install: Install, kind: str, count: int, follow: bool) -> int:
    paths = files(install, kind)
    if not paths:
        raise DeployError(f"no {kind} log in {install.log_dir} yet ({', '.join(KINDS[kind])})")

    def prefix(path: Path) -> str:
        return f"{path.name}: " if len(paths) > 1 else ""

    followed = []
    for path in paths:
        lines, end = last_lines(path, count)
        for line in lines:
            print(f"{prefix(path)}{line}")
        followed.append(Followed(path, end, path.stat().st_ino))
    sys.stdout.flush()
    try:
        while follow:
            for entry in followed:
                for line in entry.new_lines():
                    print(f"{prefix(entry.path)}{line}")
            sys.stdout.flush()
            time.sleep(POLL)
    except KeyboardInterrupt:
        pass
    return 0


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", default="app", choices=list(KINDS), help="which logs (default: app)")
    parser.add_argument("-f", "--follow", action="store_true", help="go on printing lines as they are written")
    parser.add_argument("-n", "--lines", type=int, default=20, metavar="N", help="last N lines of each (default 20)")
    fleet.host_arguments(parser, "show the logs of these servers over SSH, each line prefixed with its name")


def run(args: argparse.Namespace) -> int:
    install = Install.load(args.root)
    if args.lines < 0:
        raise DeployError(f"-n {args.lines}: give a number of lines, 0 or more")
    if args.hosts:
        argv = ["logs", args.kind, "-n", str(args.lines), *(["-f"] if args.follow else [])]
        return fleet.on_hosts(install, args.hosts, args.ssh_config, argv)
    return show(install, args.kind, args.lines, args.follow)
