"""Names and paths of one install: the only place they are computed.

An install is a checkout of the project repo at /home/<user>/<domain>/<type>/ (seed 000).
System paths (/etc/nginx, /var/log, /run, …) hang off ``system_root``: "/" on a server,
a private folder for the sandbox and for tests.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from . import ports
from .errors import DeployError
from .project import Project

ENV_CONF = Path("etc/env.conf")
PROJECT_JSON = Path("etc/project.json")


@dataclass(frozen=True)
class Install:
    """One install (dev, stage, pro) of the project, in its checkout."""

    project: Project
    root: Path
    install_type: str
    system_root: Path = field(default=Path("/"))
    app_bind: str = "127.0.0.1"  # the app server's address: loopback, or private with several hosts

    def __post_init__(self) -> None:
        if self.install_type not in ports.SLOTS:
            known = ", ".join(ports.SLOTS)
            raise DeployError(f"install type {self.install_type!r} is unknown: use one of {known}")
        check_app_bind(self.app_bind)

    @classmethod
    def load(cls, root: Path) -> Install:
        """The install whose env.conf is in ``root`` (written by ``deploytool init``)."""
        env = read_env_conf(root / ENV_CONF)
        return cls(
            project=Project.load(root / PROJECT_JSON),
            root=root,
            install_type=env["INSTALL_TYPE"],
            system_root=Path(env.get("SYSTEM_ROOT", "/")),
            app_bind=env.get("APP_BIND", "127.0.0.1"),
        )

    def system(self, path: str) -> Path:
        """A system path, under the system root."""
        return self.system_root / path.lstrip("/")

    # ---- names -------------------------------------------------------------------------
    @property
    def is_production(self) -> bool:
        """stage and pro run production settings (DEBUG off, check --deploy clean)."""
        return self.install_type != "dev"

    @property
    def site(self) -> str:
        """The install's host name, and the stem of its config names (seed 000: project.baz)."""
        domain = self.project.domain
        return domain if self.install_type == "pro" else f"{self.install_type}.{domain}"

    @property
    def server_names(self) -> list[str]:
        """Names nginx answers for and the certificate covers: pro adds the www name."""
        return [self.site, f"www.{self.site}"] if self.install_type == "pro" else [self.site]

    @property
    def service(self) -> str:
        """systemd unit or supervisor program name of the app server (seed 000: project.baz_uwsgi)."""
        return self.service_of(self.project.app_server)

    def service_of(self, server: str) -> str:
        """systemd unit or supervisor program name of one of the install's servers."""
        return f"{self.site}_{server}"

    @property
    def venv_name(self) -> str:
        """The virtualenv's folder names its Python (seed 000: env3.5)."""
        return f"env{self.project.python_version}"

    # ---- ports -------------------------------------------------------------------------
    @cached_property
    def ports(self) -> dict[str, int]:
        return ports.port_map(self.project.port_block_start, self.install_type)

    @property
    def app_address(self) -> str:
        """Where the app server listens: app_bind and the app port ([v6]:port for IPv6)."""
        host = f"[{self.app_bind}]" if ":" in self.app_bind else self.app_bind
        return f"{host}:{self.ports['app']}"

    @property
    def sandbox(self) -> bool:
        """A sandbox runs everything as the user on loopback ports of the block, without root."""
        return self.system_root != Path("/")

    @property
    def listen_http(self) -> list[str]:
        """nginx `listen` addresses for plain HTTP: 80 on a server, the block's port in a sandbox."""
        return [f"127.0.0.1:{self.ports['http']}"] if self.sandbox else ["80", "[::]:80"]

    @property
    def listen_https(self) -> list[str]:
        return [f"127.0.0.1:{self.ports['https']}"] if self.sandbox else ["443", "[::]:443"]

    @property
    def http_port(self) -> int:
        """Where nginx serves plain HTTP on this machine."""
        return self.ports["http"] if self.sandbox else 80

    @property
    def https_port(self) -> int:
        return self.ports["https"] if self.sandbox else 443

    @property
    def https_port_suffix(self) -> str:
        """What a redirect to HTTPS appends to the host: nothing on 443."""
        return f":{self.ports['https']}" if self.sandbox else ""

    @property
    def https_origins(self) -> list[str]:
        """The site's origins, as browsers send them (Django's CSRF_TRUSTED_ORIGINS)."""
        return [f"https://{name}{self.https_port_suffix}" for name in self.server_names]

    # ---- paths in the install root ------------------------------------------------------
    @property
    def venv(self) -> Path:
        return self.root / self.venv_name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def etc_dir(self) -> Path:
        return self.root / "etc"

    @property
    def static_root(self) -> Path:
        """collectstatic's output: served by nginx, never by Django."""
        return self.root / "static"

    @property
    def media_root(self) -> Path:
        """Uploads: local data, outside the code (seed 000)."""
        return self.root / "media"

    @property
    def data_dir(self) -> Path:
        """Local data: the SQLite file or the PostgreSQL cluster."""
        return self.root / "data"

    @property
    def htpasswd(self) -> Path:
        return self.etc_dir / "htpasswd"

    @property
    def settings_local(self) -> Path:
        return self.etc_dir / "settings_local.py"

    @property
    def settings_link(self) -> Path:
        """Where Django imports settings_local from: a link to etc/settings_local.py."""
        return self.root / self.project.project_slug / "settings_local.py"

    @property
    def ctl(self) -> Path:
        return self.root / "bin" / "uwsgictl.sh"

    @property
    def wsgi_app(self) -> str:
        return f"{self.project.project_slug}.wsgi:application"

    @property
    def app_log(self) -> Path:
        """The app server's own log (what it and bin/uwsgictl.sh print)."""
        name = "uwsgi.log" if self.project.app_server == "uwsgi" else "gunicorn.error.log"
        return self.log_dir / name

    @property
    def master_fifo(self) -> Path:
        """uWSGI's master FIFO: q stops gracefully, c chain-reloads."""
        return self.run_dir / "uwsgi.fifo"

    @property
    def logreopen_file(self) -> Path:
        """Touched by logrotate: uWSGI reopens its log (touch-logreopen)."""
        return self.run_dir / "uwsgi.logreopen"

    @property
    def app_config(self) -> Path:
        name = "uwsgi.yaml" if self.project.app_server == "uwsgi" else "gunicorn.conf.py"
        return self.etc_dir / name

    # ---- system paths -------------------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        """Seed 000: /var/log/<user>/<domain>/<type>, linked as logs/."""
        return self.system(f"/var/log/{self.project.user}/{self.project.domain}/{self.install_type}")

    @property
    def backup_dir(self) -> Path:
        """Seed 000: /var/backups/<user>/<domain>/<type>, linked as backups/."""
        p = self.project
        return self.system(f"/var/backups/{p.user}/{p.domain}/{self.install_type}")

    @property
    def run_dir(self) -> Path:
        """Pid file and master FIFO; made at boot by tmpfiles.d (seed 000 §5)."""
        return self.system(f"/run/{self.site}")

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.project.app_server}.pid"

    @property
    def nginx_dir(self) -> Path:
        return self.system("/etc/nginx")

    @property
    def nginx_htpasswd(self) -> Path:
        """The copy of etc/htpasswd that nginx reads (its workers cannot read the user's 600 file)."""
        return self.nginx_dir / "htpasswd" / self.site

    @property
    def letsencrypt_dir(self) -> Path:
        return self.system("/etc/letsencrypt")

    @property
    def cert_dir(self) -> Path:
        """certbot puts the site's certificate here (seed 000 §3)."""
        return self.letsencrypt_dir / "live" / self.site

    @property
    def self_signed_dir(self) -> Path:
        """A sandbox's self-signed certificate, served until certbot has issued one: kept out
        of certbot's live/, where a folder certbot did not make stops it from issuing."""
        return self.system(f"/etc/ssl/sandbox/{self.site}")

    @property
    def acme_webroot(self) -> Path:
        """Where certbot writes HTTP-01 challenges and nginx serves them from."""
        return self.system("/var/www/letsencrypt")

    @property
    def links(self) -> dict[Path, Path]:
        """Symlinks an install has: link -> target (seed 000)."""
        return {
            self.root / "logs": self.log_dir,
            self.root / "backups": self.backup_dir,
            self.settings_link: Path("../etc/settings_local.py"),
        }


def check_app_bind(address: str) -> str:
    """The app server's listen address: loopback (nginx on this host) or a private address
    (nginx on other hosts balances over it). Never public or 0.0.0.0: the uwsgi protocol,
    and gunicorn's HTTP behind nginx, have no authentication."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise DeployError(
            f"app bind address {address!r} is not an IP address: give this host's private address "
            "(e.g. 10.0.0.11) or 127.0.0.1 (deploytool init --app-bind ADDRESS)"
        ) from None
    if ip.is_unspecified or ip.is_multicast or ip.is_global:
        raise DeployError(
            f"app bind address {address} is {'every address' if ip.is_unspecified else 'public'}: the app "
            "server has no authentication, so it listens on loopback or a private address only "
            "(10/8, 172.16/12, 192.168/16, fd00::/8): deploytool init --app-bind PRIVATE_ADDRESS"
        )
    return address


def read_env_conf(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines (shell syntax, as ``source`` reads them)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DeployError(f"{path} is missing: run `python -m deploytool init --install-type dev|stage|pro`") from None
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = " ".join(shlex.split(value))
    return values
