"""The port scheme: one block of 50 ports per project, 10 per install.

Every server uses the same numbers, so an install's ports never depend on the machine.
This module is the only place that knows offsets and slots; the hooks, the templates and
the checks all ask it.
"""

from __future__ import annotations

BLOCK_SIZE = 50  # ports a project reserves: room for 5 installs
INSTALL_SIZE = 10  # ports each install owns inside the block

# Slot of each install type inside the block; slots 3 and 4 stay free for more installs.
SLOTS: dict[str, int] = {"dev": 0, "stage": 1, "pro": 2}

# Offset of each service inside an install's 10 ports.
OFFSETS: dict[str, int] = {
    "devserver": 0,  # manage.py runserver: the install's first port
    "app": 1,  # the app server (uWSGI socket or gunicorn HTTP)
    "stats": 2,  # uWSGI stats server
    "https": 3,  # nginx HTTPS in the sandbox (a server install uses 443)
    "http": 4,  # nginx HTTP in the sandbox (a server install uses 80)
    "postgresql": 5,  # the install's own PostgreSQL cluster
    "redis": 6,  # the install's own Redis
    "memcached": 7,  # the install's own memcached
    "supervisor": 8,  # supervisord's HTTP control port in the sandbox
    "media": 9,  # the media store of a fleet's data host (its own nginx: uploads over HTTP)
}


def install_base(block_start: int, install_type: str) -> int:
    """First port of an install: the block start plus 10 per slot."""
    return block_start + SLOTS[install_type] * INSTALL_SIZE


def port_map(block_start: int, install_type: str) -> dict[str, int]:
    """Every service's port for one install."""
    base = install_base(block_start, install_type)
    return {name: base + offset for name, offset in OFFSETS.items()}


def block_range(block_start: int) -> range:
    """All ports of the project's block."""
    return range(block_start, block_start + BLOCK_SIZE)


# Ports only a sandbox binds: on a server nginx answers on 80 and 443, and supervisord is
# the system's.
SANDBOX_ONLY = {"https": "443 on a server", "http": "80 on a server", "supervisor": "a sandbox's supervisord"}


def describe(block_start: int, install_type: str, server: bool = False) -> str:
    """The map as a sysadmin reads it: the block, the installs, this install's services
    (on a server, the ports only a sandbox binds say what is used instead)."""
    block = block_range(block_start)
    lines = [f"project block: {block.start}-{block.stop - 1}"]
    for name in SLOTS:
        base = install_base(block_start, name)
        mark = "  <- this install" if name == install_type else ""
        lines.append(f"  {name:<6} {base}-{base + INSTALL_SIZE - 1}{mark}")
    lines.append(f"{install_type} services:")
    for name, port in port_map(block_start, install_type).items():
        note = f"  (sandbox only; {SANDBOX_ONLY[name]})" if server and name in SANDBOX_ONLY else ""
        lines.append(f"  {name:<11} {port}{note}")
    return "\n".join(lines)
