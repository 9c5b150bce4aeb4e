"""A systemd unit's hardening rebuilt by hand, for a service to run under it: systemd is
not PID 1 here. A mount namespace (ProtectSystem=strict, ProtectHome=read-only,
ReadWritePaths=, PrivateTmp, PrivateDevices, ProtectKernelTunables, ProtectProc=invisible),
setpriv (User=, NoNewPrivileges, empty CapabilityBoundingSet) and a seccomp filter
(SystemCallFilter=, RestrictAddressFamilies=)."""

from __future__ import annotations

from pathlib import Path

from .run import tool

# The unit's SystemCallFilter= lines and RestrictAddressFamilies=, applied as systemd applies
# them: the first line allows, a line with ~ takes away, a later plain one adds back; any
# other call fails with EPERM (SystemCallErrorNumber=EPERM); socket() for AF_UNIX, AF_INET
# and AF_INET6 only.
SECCOMP_EXEC = """
import os, socket, subprocess, sys
import seccomp
FILTERS = %r

listing = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True).stdout
groups, current = {}, None
for line in listing.splitlines():
    if line.startswith("@"):
        current = groups.setdefault(line.split()[0], [])
    elif current is not None and line.strip() and not line.strip().startswith("#"):
        current.append(line.strip())

def expand(name, seen):
    if not name.startswith("@"):
        return {name}
    calls = set()
    for item in groups[name]:
        if item not in seen:
            seen.add(item)
            calls |= expand(item, seen)
    return calls

allowed = set()
for line in FILTERS:
    names = set().union(*(expand(name, set()) for name in line.lstrip("~").split()))
    allowed = allowed - names if line.startswith("~") else allowed | names
allowed.discard("socket")
fil = seccomp.SyscallFilter(defaction=seccomp.ERRNO(1))
for name in allowed:
    try:
        fil.add_rule(seccomp.ALLOW, name)
    except (RuntimeError, ValueError):
        pass  # not a system call of this architecture
for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
    fil.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, family))
fil.add_rule(seccomp.ERRNO(97), "socket", seccomp.Arg(0, seccomp.GT, socket.AF_INET6))
fil.load()
os.execv(sys.argv[1], sys.argv[1:])
"""


def unit_sandbox(unit: Path, venv: Path) -> str:
    """Shell that rebuilds, in a private mount namespace, the file system the unit's
    directives give the service (systemd is not PID 1 here, so it cannot do it itself)."""
    directives = dict(
        line.split("=", 1) for line in unit.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    for name, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectProc": "invisible",
    }.items():
        assert directives.get(name) == value, f"{unit.name}: {name}={directives.get(name)} (the emulation has {value})"
    writable = " ".join(f"'{path}'" for path in directives["ReadWritePaths"].split())
    return f"""set -e
        mkdir -p /mnt/unit-venv /mnt/unit-dev
        mount --bind '{venv}' /mnt/unit-venv  # the project venv lives in /tmp in these tests
        mount --rbind /dev /mnt/unit-dev
        # PrivateTmp=yes
        mount -t tmpfs -o mode=1777 tmpfs /tmp
        mount -t tmpfs -o mode=1777 tmpfs /var/tmp
        mkdir -p '{venv}'
        mount --move /mnt/unit-venv '{venv}'
        # ReadWritePaths=, then ProtectSystem=strict and ProtectHome=read-only: the rest read-only
        for path in {writable}; do mount --bind "$path" "$path"; done
        mount -o remount,bind,ro /
        # PrivateDevices=yes: the pseudo devices and the standard links only
        mount -t tmpfs -o mode=755 tmpfs /dev
        for node in null zero full random urandom tty; do
            touch /dev/$node
            mount --bind /mnt/unit-dev/$node /dev/$node
        done
        mkdir /dev/shm /dev/pts
        mount -t tmpfs -o mode=1777 tmpfs /dev/shm
        ln -s /proc/self/fd /dev/fd
        umount -l /mnt/unit-dev
        # ProtectKernelTunables=yes, ProtectControlGroups=yes
        mount --bind /proc/sys /proc/sys
        mount -o remount,bind,ro /proc/sys
        mount -o remount,bind,ro /sys
        # ProtectProc=invisible
        mount -t proc -o hidepid=invisible proc /proc
        """


def system_call_filters(unit: Path | None) -> list[str]:
    """The unit's SystemCallFilter= lines, in order (the app unit's defaults without one)."""
    if unit is None:
        return ["@system-service", "~@privileged @resources"]
    return [line.split("=", 1)[1] for line in unit.read_text().splitlines() if line.startswith("SystemCallFilter=")]


def as_the_unit(user: str, loader: Path, *argv: str, unit: Path | None = None) -> list[str]:
    """argv as the unit's User=, without privileges, under its seccomp filter (written to
    ``loader``); each step execs, so the pid stays the same."""
    loader.write_text(SECCOMP_EXEC % (system_call_filters(unit),))
    return [
        tool("setpriv"),
        f"--reuid={user}",
        f"--regid={user}",
        "--init-groups",
        "--no-new-privs",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "/usr/bin/python3",
        str(loader),
        *argv,
    ]


def in_the_units_sandbox(unit: Path, venv: Path, argv: list[str]) -> list[str]:
    """argv (an as_the_unit one) in a mount namespace built as the unit's directives say:
    unshare, bash, setpriv, python and the program all exec, so its pid is the unit's main pid."""
    setup = unit_sandbox(unit, venv)
    return [tool("unshare"), "--mount", "--propagation", "private", "bash", "-c", setup + 'exec "$@"', "bash", *argv]
