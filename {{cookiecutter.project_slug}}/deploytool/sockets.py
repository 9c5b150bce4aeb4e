"""What listens on this host, as the kernel records it in /proc: TCP sockets and the
processes holding them, unix sockets by path, and whether a port could be bound now.
Read, never connected to: a connection would disturb (or be logged by) a server."""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"  # TCP state in /proc/net/tcp
UNIX_LISTENING = "00010000"  # the flags of a listening socket in /proc/net/unix


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    uid: int
    inode: str


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))  # four host-order words
    return socket.inet_ntop(socket.AF_INET6, words)


def listeners() -> list[Listener]:
    """Listening TCP sockets of this host (its network namespace), from /proc/net/tcp{,6}."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != LISTEN:
                continue
            address, port = fields[1].rsplit(":", 1)
            found.append(Listener(_address(address), int(port, 16), int(fields[7]), fields[9]))
    return found


def holders(inodes: set[str]) -> list[int]:
    """The processes that hold one of these sockets open, as far as this user may see."""
    targets = {f"socket:[{inode}]" for inode in inodes}
    found = []
    for folder in Path("/proc").glob("[0-9]*"):
        try:
            if any(os.readlink(fd) in targets for fd in (folder / "fd").iterdir()):
                found.append(int(folder.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return sorted(found)


def unix_listening(path: Path) -> bool:
    """Whether a unix socket of that path listens."""
    try:
        rows = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(
        len(row.split()) > 7 and row.split()[3] == UNIX_LISTENING and row.split()[-1] == str(path) for row in rows
    )


def bind_refused(address: str, port: int) -> bool:
    """Whether a server could not bind address:port now (SO_REUSEADDR, as servers set it:
    connections of a stopped server lingering in TIME_WAIT do not make the port taken)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            if error.errno == errno.EADDRNOTAVAIL:
                return False  # not an address of this host: `init --app-bind` says so
            raise
    return False
