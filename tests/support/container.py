"""A real Debian 12 server on this machine: a debootstrap tree with systemd as PID 1, booted
with systemd-nspawn in a private network (only its own loopback), entered with nsenter.

The tree is made once per machine and kept (by its package list) under CACHE; each server
boots from an overlay of it, so a test starts from a clean system and its reboots keep
what it did. Python packages come from a wheelhouse built here from the pinned
requirements, which the server's pip reads as its only index (/etc/pip.conf), as a
server with a local mirror would: the server itself never reaches the network.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .bake import SYSTEM_PYTHON, pinned_requirements
from .run import program, run

CACHE = Path("/var/cache/dj-layout")
MIRROR = "http://deb.debian.org/debian"
# What a server of the admin's journey has, as the README lists it (and what the test uses
# inside: pebble for the certificate, iproute2 and procps to look).
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "nginx",
    "certbot",
    "supervisor",
    "python3",
    "python3-venv",
    "python3-dev",  # uWSGI links libpython3.11
    "gcc",
    "git",
    "rsync",  # deploytool backup: media by hard-linked increments
    "openssl",
    "logrotate",
    "pebble",
    "iproute2",
    "ca-certificates",
    "postgresql",
    "redis-server",
    "memcached",
    "procps",
    "polkitd",  # lets the project user start and stop its own unit (the system part's rule)
    "cron",  # runs the scheduled jobs of a supervisor install
    "nftables",  # the install's rules, loaded by the system part and at boot
]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def debian_tree() -> Path:
    """The Debian 12 tree, made on first use (a few minutes: the packages are downloaded)."""
    tree = CACHE / f"bookworm-{_key(*PACKAGES)}"
    if (tree / ".complete").exists():
        return tree
    CACHE.mkdir(parents=True, exist_ok=True)
    new = tree.with_name(tree.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    started = time.monotonic()
    print(f"\ndebootstrap: a Debian 12 tree into {tree} (once per machine) ...", flush=True)
    base = ["systemd", "systemd-sysv", "dbus"]
    run(
        [
            program("debootstrap", "debootstrap"),
            "--variant=minbase",
            f"--include={','.join(base)}",
            "bookworm",
            new,
            MIRROR,
        ],
        timeout=1800,
    )
    # The rest with apt, which resolves what debootstrap cannot (virtual packages). Nothing
    # starts in the chroot (policy-rc.d); Debian's packages are enabled for the first boot.
    policy = new / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    env = {"PATH": PATH, "DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"}
    run(["chroot", new, "apt-get", "update", "-qq"], env=env, timeout=600)
    run(["chroot", new, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], env=env, timeout=1800)
    run(["chroot", new, "apt-get", "clean"], env=env)
    policy.unlink()
    (new / ".complete").touch()
    new.rename(tree)
    print(f"debootstrap: done in {time.monotonic() - started:.0f} s", flush=True)
    return tree


def wheelhouse() -> Path:
    """Wheels of every pinned requirement (uWSGI compiled here once), for the server's pip."""
    requirements = "\n".join(pinned_requirements()) + "\n"  # every pin any answer can ask for
    folder = CACHE / f"wheels-{_key(requirements)}"
    if (folder / ".complete").exists():
        return folder
    new = folder.with_name(folder.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    (new / "requirements.txt").write_text(requirements)
    # Debian's Python, as on the server; a builder venv with setuptools and wheel, since
    # uWSGI is built from its source (its setup.py needs bdist_wheel).
    builder = new / ".builder"
    run([SYSTEM_PYTHON, "-m", "venv", builder])
    pip = [builder / "bin/python", "-m", "pip", "-q", "--disable-pip-version-check"]
    run([*pip, "install", "setuptools", "wheel"], timeout=600)
    run([*pip, "wheel", "--no-build-isolation", "-r", new / "requirements.txt", "-w", new], timeout=1200)
    run([*pip, "download", "-d", new, "pip", "setuptools", "wheel"], timeout=600)
    shutil.rmtree(builder)
    (new / ".complete").touch()
    new.rename(folder)
    return folder


class Server:
    """One booted container: run commands in it as root or as a user, reboot it."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.base = base
        self.root = base / "root"
        self.log = base / "nspawn.log"
        self.process: subprocess.Popen[bytes] | None = None

    # ---- lifecycle -----------------------------------------------------------------------------
    def boot(self, timeout: float = 90) -> float:
        """Boot it and wait until systemd says the system is up; returns the seconds it took."""
        started = time.monotonic()
        argv = [
            program("systemd-nspawn", "systemd-container"),
            "--quiet",
            "--register=no",
            "--keep-unit",
            "--private-network",
            f"--machine={self.name}",
            "-D",
            str(self.root),
            "--boot",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{self.name} stopped while booting:\n{self.log.read_text()[-3000:]}"
            if self.leader() is not None:
                done = self.sh("systemctl is-system-running --wait", check=False, timeout=timeout)
                state = done.stdout.strip()
                if state in ("running", "degraded"):
                    return time.monotonic() - started
            time.sleep(0.5)
        raise AssertionError(
            f"{self.name} did not boot within {timeout:.0f} s ({state}):\n{self.log.read_text()[-3000:]}"
        )

    def leader(self) -> int | None:
        """The container's PID 1 (systemd), as this machine numbers it."""
        if self.process is None:
            return None
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        except OSError:
            return None
        for pid in children:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            except OSError:
                continue
        return None

    def poweroff(self, timeout: float = 90) -> None:
        """`systemctl poweroff` inside; nspawn ends once the container has shut down."""
        if self.process is None or self.process.poll() is not None:
            return
        self.sh("systemctl poweroff", check=False, timeout=30)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.name} did not power off within {timeout:.0f} s") from None

    # ---- commands ----------------------------------------------------------------------------
    def enter(self, *argv: str | Path, user: str | None = None) -> list[str]:
        """argv run inside (every namespace, the container's root), with a clean environment."""
        pid = self.leader()
        assert pid is not None, f"{self.name} is not running"
        home = f"/home/{user}" if user else "/root"
        env = ["env", "-i", f"PATH={PATH}", f"HOME={home}", "LANG=C.UTF-8", f"USER={user or 'root'}"]
        who = ["runuser", "-u", user, "--"] if user else []
        return [program("nsenter", "util-linux"), "-t", str(pid), "-a", "-r", "-w", *env, *who, *map(str, argv)]

    def sh(
        self, script: str, user: str | None = None, check: bool = True, timeout: float = 600, cwd: str = "/"
    ) -> subprocess.CompletedProcess[str]:
        """A shell line inside, as root or ``user``, failing the test with its output."""
        line = f"set -euo pipefail; cd {shlex.quote(cwd)}; {script}"
        proc = subprocess.run(
            self.enter("bash", "-c", line, user=user), capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert proc.returncode == 0, (
                f"{self.name}{' as ' + user if user else ''}: {script}\nexit {proc.returncode}\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        return proc

    def wait(self, check: str, what: str, timeout: float = 30) -> None:
        """Run the shell check inside until it succeeds; fail naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.sh(check, check=False).returncode != 0:
            assert time.monotonic() < deadline, f"{self.name}: {what}: not within {timeout:.0f} s"
            time.sleep(0.3)


@contextmanager
def booted(name: str, wheels: Path) -> Iterator[Server]:
    """A fresh server from the cached tree (an overlay: its changes stay in a temporary
    folder), booted; powered off and removed afterwards."""
    tree = debian_tree()
    base = Path(tempfile.mkdtemp(prefix=f"dj-layout-{name}-"))
    server = Server(name, base)
    for folder in ("upper", "work", "root"):
        (base / folder).mkdir()
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={tree},upperdir={base}/upper,workdir={base}/work",
            server.root,
        ]
    )
    try:
        # pip's one index: the wheelhouse, as a local mirror would be configured.
        shutil.copytree(wheels, server.root / "var/cache/wheels")
        (server.root / "etc/pip.conf").write_text("[global]\nno-index = true\nfind-links = /var/cache/wheels\n")
        (server.root / "etc/hostname").write_text(f"{name}\n")
        server.boot()
        yield server
    finally:
        try:
            server.poweroff()
        finally:
            subprocess.run(["umount", "-l", server.root], capture_output=True)
            if os.environ.get("DJ_LAYOUT_KEEP_SERVER") != "1":
                shutil.rmtree(base, ignore_errors=True)
