"""etc/fleet.ini: the servers of the project, what each one holds, how to reach it. The one
place the file is read (tracked: the servers are shared knowledge, reviewed like
app_upstreams):

    [web1]                      ; a name for --hosts, and the SSH host unless `address` is set
    address = 10.0.0.11         ; what SSH connects to (~/.ssh/config Host entries apply)
    port = 22                   ; default: ssh_config's, else 22
    user = baz                  ; default: the project user (deploy refuses root)
    root = /home/baz/baz.example/pro   ; default: /home/<user>/<domain>/<install type>
    roles = app                 ; front, app, data (comma-separated); default: app
    private = 10.0.0.11         ; its address on the private network between the roles
                                ; (default: address, when that is a private one)

Roles: `front` runs nginx (TLS, static files, the balancer), `app` the app server, `data`
the install's PostgreSQL (one host at most). A host knows which section is its own from env.conf's
FLEET_HOST (`deploytool init --fleet-host NAME`); without one it is a single server holding
every role, as before fleet.ini existed.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .addresses import private_address
from .errors import DeployError

PATH = Path("etc/fleet.ini")
ROLES = ("front", "app", "data")
DEFAULT_ROLES = ("app",)  # what fleet.ini's hosts were before roles: the app servers deployed to
KEYS = {"address", "port", "user", "root", "roles", "private"}


@dataclass(frozen=True)
class Host:
    """One server of the fleet: where its install is, what it holds, its private address."""

    name: str
    address: str
    user: str
    port: int | None
    root: PurePosixPath
    roles: tuple[str, ...] = DEFAULT_ROLES
    private: str = ""  # "" when the inventory gives none (address is a host name)

    @property
    def where(self) -> str:
        return f"{self.user}@{self.address}{f':{self.port}' if self.port else ''}:{self.root}"


def load(path: Path, user: str, default_root: Callable[[str], PurePosixPath]) -> dict[str, Host]:
    """The hosts of ``path`` in file order ({} when there is no inventory); ``user`` is the
    default SSH user, ``default_root`` gives a user's install root. Errors name the section,
    the key, the value and the rule."""
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    try:
        with open(path) as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        return {}
    except configparser.Error as error:
        raise DeployError(f"{path} is not a valid INI file ({error.message.splitlines()[0]}): fix it") from None
    hosts = {}
    for name in parser.sections():
        section = parser[name]
        where = f"{path} [{name}]"
        unknown = set(section) - KEYS
        if unknown:
            raise DeployError(
                f"{where}: unknown key {', '.join(sorted(unknown))}: use {', '.join(sorted(KEYS))} "
                "(SSH keys, jump hosts and the like go in ~/.ssh/config)"
            )
        port = section.get("port")
        if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
            raise DeployError(f"{where}: port = {port!r} is not a port number (1-65535)")
        host_user = section.get("user", user)
        root = PurePosixPath(section.get("root", str(default_root(host_user))))
        if not root.is_absolute():
            raise DeployError(f"{where}: root = {root} must be an absolute path on the host")
        address = section.get("address", name)
        hosts[name] = Host(
            name,
            address,
            host_user,
            int(port) if port else None,
            root,
            roles_of(section.get("roles"), where),
            private_of(section.get("private"), address, where),
        )
    return hosts


def roles_of(value: str | None, where: str) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_ROLES
    roles = tuple(role.strip() for role in value.split(",") if role.strip())
    wrong = [role for role in roles if role not in ROLES]
    if wrong or not roles:
        raise DeployError(f"{where}: roles = {value!r}: give one or more of {', '.join(ROLES)}, comma-separated")
    return tuple(role for role in ROLES if role in roles)  # one order everywhere


def private_of(value: str | None, address: str, where: str) -> str:
    """The private address: as given (checked), else ``address`` when that is a private one;
    "" for a host name or a public address: such a host cannot be named in a rule."""
    if value is not None:
        return private_address(value, f"{where}: private")
    try:
        return private_address(address, "address")
    except DeployError:
        return ""


def with_role(hosts: dict[str, Host], role: str) -> list[Host]:
    return [host for host in hosts.values() if role in host.roles]


def private_addresses(hosts: list[Host], what: str) -> list[str]:
    """The hosts' private addresses; a host without one is refused (a rule needs an address)."""
    missing = [host.name for host in hosts if not host.private]
    if missing:
        raise DeployError(
            f"etc/fleet.ini: {', '.join(missing)} ({what}) has no private address: add `private = ADDRESS` "
            "(its address on the network between the roles)"
        )
    return [host.private for host in hosts]
