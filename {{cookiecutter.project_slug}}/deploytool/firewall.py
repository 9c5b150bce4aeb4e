"""The install's nftables rules: who may reach its ports, from the port map and the fleet's
roles (etc/fleet.ini). Rendered into etc/nftables/<site>.nft by `render`; `check` runs
`nft -c` on it.

On a single server every port of the install is for this host only (loopback): nginx on
80 and 443 is the only door. In a fleet, this host opens what its roles serve to the hosts
whose roles use it: the app port (APP_BIND) to the fronts; PostgreSQL and Redis to the
app hosts; the media store to the fronts and app hosts. Every other port of the install,
and every other source, is refused. One table per install: other installs' rules, SSH and
the administrator's own ruleset are left alone.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .dedicated import for_install
from .inventory import private_addresses, with_role
from .layout import Install
from .ports import INSTALL_SIZE

# The dedicated servers app hosts reach over the network when they run on a data host.
# memcached is not among them: it has no password, so it stays on each host's unix socket.
SHARED = {"postgresql": "PostgreSQL", "redis": "Redis"}


@dataclass(frozen=True)
class Opening:
    """One port of the install, opened to these sources."""

    port: int
    service: str
    why: str
    ipv4: list[str]
    ipv6: list[str]


@dataclass(frozen=True)
class Rules:
    table: str  # the install's own nftables table
    first: int  # the install's ports, first and last
    last: int
    openings: list[Opening]
    front: bool  # this host serves 80 and 443 (nginx)


def applies(install: Install) -> bool:
    """Whether the rules can be known: a single server (its app server on a unix socket), or
    a host of the fleet (FLEET_HOST). An app server on a private address with no FLEET_HOST
    would be refused to the fronts that balance over it: no file then, and `check` says why."""
    return bool(install.fleet_host) or install.app_on_socket


def rules(install: Install) -> Rules:
    openings = []
    if install.fleet_host:
        hosts, roles = install.fleet, install.roles
        if "app" in roles and not install.app_on_socket:
            fronts = private_addresses(with_role(hosts, "front"), "front")
            openings.append(opening(install.ports["app"], install.project.app_server, "the fronts' nginx", fronts))
        if "data" in roles:
            apps = private_addresses(with_role(hosts, "app"), "app")
            for server in for_install(install):
                if server.name in SHARED:
                    why = f"the app hosts ({SHARED[server.name]})"
                    openings.append(opening(install.ports[server.name], server.name, why, apps))
            if install.runs_media_store:
                why = "the fronts and app hosts (the media store: uploads)"
                openings.append(opening(install.ports["media"], "media", why, install.media_readers))
    first = install.ports["devserver"]
    return Rules(table(install), first, first + INSTALL_SIZE - 1, openings, "front" in install.roles)


def opening(port: int, service: str, why: str, sources: list[str]) -> Opening:
    v4 = [address for address in sources if ipaddress.ip_address(address).version == 4]
    v6 = [address for address in sources if ipaddress.ip_address(address).version == 6]
    return Opening(port, service, why, v4, v6)


def table(install: Install) -> str:
    """nftables names are identifiers: the site with every other character an underscore."""
    return "djl_" + re.sub(r"[^A-Za-z0-9_]", "_", install.site)
