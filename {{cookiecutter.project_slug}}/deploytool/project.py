"""The project-wide answers, as cookiecutter wrote them to etc/project.json."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from .addresses import private_address
from .errors import DeployError


@dataclass(frozen=True)
class Upstream:
    """One app server nginx balances over."""

    host: str
    port: int | None  # None: the install's own app port (the same on every server)
    weight: int = 1


@dataclass(frozen=True)
class Project:
    """Answers shared by every install of the project."""

    project_name: str
    project_slug: str
    domain: str
    user: str
    port_block_start: int
    python_version: str
    app_server: str
    process_manager: str
    database: str
    cache: str
    admin_basic_auth: bool
    certbot_email: str
    app_upstreams: str
    balancing: str
    template_version: str
    # Added in 0.2: a project.json written before it has no such key (no subdomain HSTS).
    hsts_subdomains: bool = False
    # Added in 0.3: how many backups retention keeps (the newest of each day, ISO week, month).
    backup_keep_daily: int = 7
    backup_keep_weekly: int = 4
    backup_keep_monthly: int = 6
    # Added with e-mail: who gets the error reports (Django's ADMINS); "" nobody.
    admin_email: str = ""
    # Added with the background worker: none, or celery (a worker on the install's Redis).
    worker: str = "none"

    @classmethod
    def load(cls, path: Path) -> Project:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DeployError(f"{path} is missing: run deploytool from the install root") from None
        return cls(**data)

    @property
    def upstreams(self) -> list[Upstream]:
        """Parse 'host[:port][ weight=N], ...'; empty means this host only."""
        return parse_upstreams(self.app_upstreams)


def parse_upstreams(text: str) -> list[Upstream]:
    upstreams = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        address, *options = item.split()
        host, _, port = address.rpartition(":") if address.count(":") == 1 else (address, "", "")
        weight = 1
        for option in options:
            key, _, value = option.partition("=")
            if key != "weight" or not value.isdigit() or int(value) < 1:
                raise DeployError(f"upstream option {option!r} in {item!r}: only weight=N (N >= 1)")
            weight = int(value)
        host = host or address
        if _is_ip(host):
            host = private_address(host, f"app server {host} in app_upstreams")
        upstreams.append(Upstream(host, int(port) if port else None, weight))
    return upstreams


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
