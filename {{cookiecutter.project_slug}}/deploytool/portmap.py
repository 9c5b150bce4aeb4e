"""`deploytool ports --check`: the ports of this host's installs against each other and
against the programs that hold them.

- Installs are found where the layout puts them, /home/<user>/<domain>/<type>/ (an env.conf
  and a project.json in etc/), plus this checkout wherever it is. No registry to keep in step:
  what is on disk is what runs, whatever template version made it. Folders this user
  cannot read are named (run as root to see every install).
- Two projects whose blocks of 50 overlap collide, even when no port is in use yet; two
  installs whose ten ports overlap (the same type of the same project twice) too.
- A port of this project's block that something else listens on (another user's socket in
  /proc/net/tcp, or a bind that fails with "address in use") is taken.
- The block inside the kernel's ephemeral range (outgoing connections pick their local
  port there) is a note: reserve it with net.ipv4.ip_local_reserved_ports.

Exit status 0 when nothing collides, 1 when something does.
"""

from __future__ import annotations

import argparse
import json
import pwd
from dataclasses import dataclass
from pathlib import Path

from . import ports
from .errors import DeployError
from .layout import ENV_CONF, PROJECT_JSON, Install, read_env_conf
from .sockets import Listener, bind_refused, holders, listeners


@dataclass(frozen=True)
class Found:
    """An install on this host, as its own files describe it."""

    root: Path
    domain: str
    user: str
    install_type: str
    block_start: int

    @property
    def block(self) -> range:
        return ports.block_range(self.block_start)

    @property
    def ten(self) -> range:
        base = ports.install_base(self.block_start, self.install_type)
        return range(base, base + ports.INSTALL_SIZE)

    def __str__(self) -> str:
        return f"{self.domain} {self.install_type} ({self.root})"


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `ports`."""
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the installs on this host for overlapping blocks and ports held by other programs",
    )
    parser.add_argument(
        "--home-base",
        type=Path,
        default=Path("/home"),
        metavar="DIR",
        help="where installs live, as DIR/<user>/<domain>/<type> (default /home)",
    )


def run(args: argparse.Namespace) -> int:
    install = Install.load(args.root)
    if not args.check:
        print(ports.describe(install.project.port_block_start, install.install_type, server=not install.sandbox))
        return 0
    lines, failed = check(install, args.home_base)
    print("\n".join(lines))
    return 1 if failed else 0


# ---- the installs ------------------------------------------------------------------------------
def read_install(root: Path) -> Found:
    env = read_env_conf(root / ENV_CONF)
    try:
        answers = json.loads((root / PROJECT_JSON).read_text())
        return Found(root, answers["domain"], answers["user"], env["INSTALL_TYPE"], int(answers["port_block_start"]))
    except (OSError, ValueError, KeyError) as error:
        raise DeployError(f"{root}: unreadable env.conf or project.json ({error})") from None


def discover(base: Path) -> tuple[list[Found], list[str]]:
    """Installs at base/<user>/<domain>/<type>/, and what could not be read (with why)."""
    found: list[Found] = []
    unreadable: list[str] = []

    def children(folder: Path) -> list[Path]:
        try:
            return sorted(path for path in folder.iterdir() if path.is_dir() and not path.is_symlink())
        except PermissionError:
            unreadable.append(f"{folder} (permission denied)")
        except OSError as error:
            unreadable.append(f"{folder} ({error.strerror})")
        return []

    for user in children(base):
        for domain in children(user):
            for root in children(domain):
                try:
                    if not (root / ENV_CONF).is_file():
                        continue
                    found.append(read_install(root))
                except PermissionError:
                    unreadable.append(f"{root} (permission denied)")
                except DeployError as error:
                    unreadable.append(str(error))
    return found, unreadable


def overlap(a: range, b: range) -> range:
    return range(max(a.start, b.start), min(a.stop, b.stop))


def span(r: range) -> str:
    return f"{r.start}-{r.stop - 1}" if len(r) > 1 else str(r.start)


def collisions(installs: list[Found]) -> list[str]:
    """Blocks of different projects that overlap; the same ten ports used by two installs."""
    problems = []
    projects: dict[str, Found] = {}
    for found in installs:
        projects.setdefault(found.domain, found)
    names = sorted(projects)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = overlap(projects[a].block, projects[b].block)
            if shared:
                problems.append(
                    f"blocks overlap: {a} {span(projects[a].block)} and {b} {span(projects[b].block)} share "
                    f"{span(shared)}; give one project another port_block_start (a multiple of 10, clear of "
                    "both), with `cruft update` and a new answer, then render and restart its installs"
                )
    for i, a in enumerate(installs):
        for b in installs[i + 1 :]:
            shared = overlap(a.ten, b.ten)
            if shared and a.domain == b.domain:
                problems.append(
                    f"two installs use ports {span(shared)}: {a} and {b}; one install of each type per "
                    "project and host: remove one, or init it as another type"
                )
            elif shared:
                problems.append(f"installs share ports {span(shared)}: {a} and {b}")
    return problems


# ---- what listens ------------------------------------------------------------------------------
def owner(listener: Listener) -> str:
    """Which program holds a socket, as far as this user may see."""
    try:
        user = pwd.getpwuid(listener.uid).pw_name
    except KeyError:
        user = f"uid {listener.uid}"
    for pid in holders({listener.inode}):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        return f"{name} (pid {pid}, user {user})"
    return f"a program of user {user} (run as root to name it)"


def taken(install: Install) -> tuple[list[str], list[str]]:
    """Ports of the block held by others (problems), and those this project's user holds."""
    block = ports.block_range(install.project.port_block_start)
    names = {port: name for name, port in install.ports.items()}
    try:
        uid = pwd.getpwnam(install.project.user).pw_uid
    except KeyError:
        uid = -1  # no such user here: every listener is someone else's
    problems, ours = [], []
    seen = set()
    for listener in sorted(listeners(), key=lambda item: item.port):
        if listener.port not in block:
            continue
        seen.add(listener.port)
        what = f"port {listener.port}" + (f" ({names[listener.port]})" if listener.port in names else "")
        where = f"on {listener.address}"
        if listener.uid != uid:
            problems.append(
                f"{what} {where} is held by another program: {owner(listener)}; stop it or move it off the "
                f"block {span(block)}"
            )
        else:
            ours.append(f"{what} {where}: {owner(listener)}")
    for name, port in install.ports.items():
        addresses = ["127.0.0.1"] + ([install.app_bind] if name == "app" and install.app_bind != "127.0.0.1" else [])
        for address in addresses:
            if port not in seen and bind_refused(address, port):
                problems.append(
                    f"port {port} ({name}) on {address} is in use but nothing listens on it (an outgoing "
                    "connection took it as its local port?): the service cannot bind it until that ends; "
                    f"reserve the block: sysctl -w net.ipv4.ip_local_reserved_ports={span(block)}"
                )
    return problems, ours


def ephemeral_note(block: range) -> str | None:
    """A note when outgoing connections may pick ports of the block as their local port."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        reserved_text = Path("/proc/sys/net/ipv4/ip_local_reserved_ports").read_text().strip()
    except (OSError, ValueError):
        return None
    reserved: set[int] = set()
    for part in filter(None, reserved_text.split(",")):
        start, _, stop = part.partition("-")
        reserved.update(range(int(start), int(stop or start) + 1))
    exposed = [port for port in overlap(block, range(low, high + 1)) if port not in reserved]
    if not exposed:
        return None
    return (
        f"note  ports {exposed[0]}-{exposed[-1]} of the block lie in the kernel's ephemeral range {low}-{high}: "
        "an outgoing connection may hold one when a service starts; reserve them: "
        f"sysctl -w net.ipv4.ip_local_reserved_ports={span(block)} (and in /etc/sysctl.d/)"
    )


# ---- the report --------------------------------------------------------------------------------
def check(install: Install, base: Path) -> tuple[list[str], bool]:
    me = read_install(install.root)
    found, unreadable = discover(base)
    others = [other for other in found if other.root.resolve() != install.root.resolve()]
    installs = [me, *others]
    block = ports.block_range(install.project.port_block_start)
    lines = [
        f"ports --check: {me}: block {span(block)}, this install {span(me.ten)}",
        f"installs found under {base}: {len(found)}" + (f"; could not read {len(unreadable)}" if unreadable else ""),
    ]
    lines += [f"  {other}: block {span(other.block)}" for other in others]
    lines += [f"  unreadable: {item}; run as root to check it" for item in unreadable]
    clashes = collisions(installs)
    held, ours = taken(install)
    problems = clashes + held
    lines += [f"FAIL  {problem}" for problem in problems]
    if not clashes:
        projects = len({found.domain for found in installs})
        lines.append(f"ok    no blocks or installs overlap ({len(installs)} install(s), {projects} project(s))")
    if not held:
        lines.append(f"ok    no other program holds a port of {span(block)}")
    lines += [f"ok    {line}" for line in ours]
    note = ephemeral_note(block)
    if note:
        lines.append(note)
    return lines, bool(problems)
