"""Names and paths of one install: the only place they are computed.

An install is a checkout of the project repo at /home/<user>/<domain>/<type>/.
System paths (/etc/nginx, /var/log, /run, …) hang off ``system_root``: "/" on a server,
a private folder for the sandbox and for tests.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shlex
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

from . import inventory, ports, sizing
from .addresses import private_address, url_host
from .errors import DeployError
from .project import Project

# The checkout (or root's copy) this deploytool ships in: its etc/templates/ render.
CODE_ROOT = Path(__file__).resolve().parent.parent
ENV_CONF = Path("etc/env.conf")
PROJECT_JSON = Path("etc/project.json")
# The media store's writers (the app hosts' Django) in its basic auth.
MEDIA_WRITER = "media"
# Linux's sun_path holds 108 bytes with the closing NUL: a longer unix socket path cannot bind.
SOCKET_PATH_MAX = 107
# The user and group Debian's nginx workers run as: the one group let into the app's socket
# folder, static/ and media/, and the owner of nginx's copy of the htpasswd file.
NGINX_USER = NGINX_GROUP = "www-data"


@dataclass(frozen=True)
class Install:
    """One install (dev, stage, pro) of the project, in its checkout."""

    project: Project
    root: Path
    install_type: str
    system_root: Path = field(default=Path("/"))
    # "" (the default): the app server listens on a unix socket only this host's nginx may
    # enter; a private address of this host when nginx on other hosts balances over it.
    app_bind: str = ""
    # Where etc/templates/ are read from: the checkout, or root's own copy for the system part.
    code_root: Path | None = None
    # The app server's processes as env.conf's APP_WORKERS sets them; None: from the host.
    workers: int | None = None
    # Whether this host runs the scheduled jobs (and Celery beat): env.conf's JOBS. With
    # several hosts serving one site exactly one does (`deploytool init --jobs off` elsewhere).
    jobs: bool = True
    # This host's section of etc/fleet.ini (env.conf's FLEET_HOST): its roles, and the other
    # hosts' private addresses, come from there. "": a single server, holding every role.
    fleet_host: str = ""

    def __post_init__(self) -> None:
        if self.install_type not in ports.SLOTS:
            known = ", ".join(ports.SLOTS)
            raise DeployError(f"install type {self.install_type!r} is unknown: use one of {known}")
        if self.app_bind:
            object.__setattr__(self, "app_bind", check_app_bind(self.app_bind))

    @classmethod
    def for_root(cls, code_root: Path, root: Path, system_root: Path) -> Install:
        """The install as root's system part sees it: answers from root's own copy of the
        project (code_root), and from the user's checkout only the install type and the
        app's address in env.conf, read without following links and checked."""
        from .files import read_user_file  # files imports nothing of layout

        project = Project.load(code_root / PROJECT_JSON)
        env = parse_env_conf(read_user_file(root / ENV_CONF, uid_of(project.user)).decode())
        jobs, fleet_host = jobs_of(env), env.get("FLEET_HOST", "")
        return cls(
            project,
            root,
            env.get("INSTALL_TYPE", ""),
            system_root,
            app_bind_of(env),
            code_root,
            jobs=jobs,
            fleet_host=fleet_host,
        )

    @classmethod
    def load(cls, root: Path) -> Install:
        """The install whose env.conf is in ``root`` (written by ``deploytool init``)."""
        env = read_env_conf(root / ENV_CONF)
        return cls(
            project=Project.load(root / PROJECT_JSON),
            root=root,
            install_type=env["INSTALL_TYPE"],
            system_root=system_root_of(root, env.get("SYSTEM_ROOT", "/")),
            app_bind=app_bind_of(env),
            workers=sizing.workers_setting(env.get("APP_WORKERS", "")),
            jobs=jobs_of(env),
            fleet_host=env.get("FLEET_HOST", ""),
        )

    @property
    def templates(self) -> Path:
        """etc/templates/ of the code that renders: the checkout's, or root's own copy's."""
        return (self.code_root or self.root) / "etc" / "templates"

    @property
    def system_root_setting(self) -> str:
        """SYSTEM_ROOT as env.conf keeps it: relative when inside the checkout (.sandbox), so
        a copied or moved checkout has its own sandbox, never the original's."""
        try:
            return str(self.system_root.relative_to(self.root)) or "."
        except ValueError:
            return str(self.system_root)

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
        """The install's host name, and the stem of its config names (pro: the domain; stage.<domain>, dev.<domain>)."""
        domain = self.project.domain
        return domain if self.install_type == "pro" else f"{self.install_type}.{domain}"

    @property
    def server_names(self) -> list[str]:
        """Names nginx answers for and the certificate covers: pro adds the www name."""
        return [self.site, f"www.{self.site}"] if self.install_type == "pro" else [self.site]

    @property
    def service(self) -> str:
        """systemd unit or supervisor program name of the app server (<site>_uwsgi, <site>_gunicorn)."""
        return self.service_of(self.project.app_server)

    def service_of(self, server: str) -> str:
        """systemd unit or supervisor program name of one of the install's servers."""
        return f"{self.site}_{server}"

    @property
    def venv_name(self) -> str:
        """The virtualenv's folder names its Python (env3.11): a new Python gets a new venv beside it."""
        return f"env{self.project.python_version}"

    @property
    def owner_uid(self) -> int | None:
        """As root: the project user's uid, which every file root reads from the checkout
        must belong to. As anyone else: None (the kernel's permissions decide)."""
        if os.geteuid() != 0 or self.root.lstat().st_uid == 0:
            return None  # not root, or root's own checkout (a bake as root): nothing to guard
        return uid_of(self.project.user)

    # ---- the fleet (etc/fleet.ini) -------------------------------------------------------
    def default_root(self, user: str) -> PurePosixPath:
        """Where a user's install of this type is on a server: /home/<user>/<domain>/<type>."""
        return PurePosixPath("/home", user, self.project.domain, self.install_type)

    @cached_property
    def fleet(self) -> dict[str, inventory.Host]:
        """etc/fleet.ini's hosts, as the code that renders has the file (tracked)."""
        return inventory.load((self.code_root or self.root) / inventory.PATH, self.project.user, self.default_root)

    def fleet_entry(self) -> inventory.Host | None:
        """This host's section of etc/fleet.ini (None: a single server); a FLEET_HOST the
        file does not have is refused."""
        if not self.fleet_host:
            return None
        host = self.fleet.get(self.fleet_host)
        if host is None:
            known = ", ".join(self.fleet) or "no section"
            raise DeployError(
                f"FLEET_HOST={self.fleet_host!r} (--fleet-host) is not a section of etc/fleet.ini ({known}): "
                "add it there, or give a name it has"
            )
        return host

    @property
    def roles(self) -> tuple[str, ...]:
        """What this host holds: its fleet.ini section's roles, or every role (a single server)."""
        host = self.fleet_entry()
        return host.roles if host else inventory.ROLES

    @property
    def data_host(self) -> inventory.Host | None:
        """The fleet's data host, whose PostgreSQL every app host uses; None on a single server
        and in a fleet without one (each host then has its own database, as before)."""
        if not self.fleet_host:
            return None
        hosts = inventory.with_role(self.fleet, "data")
        if len(hosts) > 1:
            names = ", ".join(host.name for host in hosts)
            raise DeployError(f"etc/fleet.ini: {names} all have the role data: one host holds the site's data")
        return hosts[0] if hosts else None

    @property
    def runs_database(self) -> bool:
        """This host runs the install's own PostgreSQL and Redis (those the answers chose): a
        single server, the data host, or every host of a fleet without a data host."""
        return self.data_host is None or "data" in self.roles

    @property
    def shares_cache(self) -> bool:
        """The site's Redis is the data host's, on its private address with a password: the
        one cache and session store of every app host. Otherwise (a single server, no data
        host, memcached) each host has its own on a unix socket."""
        return self.data_host is not None and self.project.cache == "redis"

    @property
    def shares_media(self) -> bool:
        """Uploads live in the data host's media store: every app host writes them there over
        HTTP (MEDIA_PASSWORD), every front serves them from there. Otherwise (a single server,
        no data host) they are files in this host's media/."""
        return self.data_host is not None

    @property
    def runs_media_store(self) -> bool:
        """This host is the data host of a fleet: it runs the media store, over its media/."""
        return self.shares_media and "data" in self.roles

    @property
    def media_store_address(self) -> str:
        """Where the media store listens and the app hosts and fronts reach it."""
        return f"{url_host(self.data_address)}:{self.ports['media']}"

    def fleet_addresses(self, role: str) -> list[str]:
        """Private addresses of the fleet's hosts with ``role``."""
        return inventory.private_addresses(inventory.with_role(self.fleet, role), role)

    @property
    def media_readers(self) -> list[str]:
        """Who reads from the media store: the fronts (they serve /media/) and the app hosts."""
        return list(dict.fromkeys(self.fleet_addresses("front") + self.fleet_addresses("app")))

    @property
    def media_store_conf(self) -> Path:
        """The media store's own nginx.conf: read by the project user's nginx from etc/."""
        return self.etc_dir / "nginx" / f"{self.site}_media.conf"

    @property
    def media_htpasswd(self) -> Path:
        """The media store's writers' password (MEDIA_PASSWORD, hashed): made by init on the
        data host, read there by the media store's nginx, which runs as the project user."""
        return self.etc_dir / "media.htpasswd"

    @property
    def serves_app(self) -> bool:
        """This host runs the app server: a single server, or a host of the fleet with the role
        app. A front without it balances over the app hosts (app_upstreams) and serves static files."""
        return "app" in self.roles

    @property
    def migrates(self) -> bool:
        """This host runs `migrate`: it holds the database or serves the app. A front of a
        fleet with a data host never reaches the database (its rules and pg_hba.conf refuse it)."""
        return self.runs_database or "app" in self.roles

    @property
    def data_address(self) -> str:
        """Where the install's PostgreSQL (and a shared Redis) listens and the app connects
        (settings_local.py's HOST, written by init): the data host's private address, else
        127.0.0.1."""
        host = self.data_host
        return inventory.private_addresses([host], "data")[0] if host else "127.0.0.1"

    @property
    def database_clients(self) -> list[str]:
        """Private addresses this host's PostgreSQL admits besides loopback: on a data host, the
        fleet's app hosts and itself (the app, backups and jobs connect to HOST)."""
        if self.data_host is None or "data" not in self.roles:
            return []
        hosts = [host for host in self.fleet.values() if "app" in host.roles or host.name == self.fleet_host]
        return inventory.private_addresses(hosts, "app")

    # ---- ports -------------------------------------------------------------------------
    @cached_property
    def ports(self) -> dict[str, int]:
        return ports.port_map(self.project.port_block_start, self.install_type)

    @property
    def app_on_socket(self) -> bool:
        """The app server listens on a unix socket (nginx on this host only), not on TCP."""
        return not self.app_bind

    @property
    def app_address(self) -> str:
        """Where the app server listens: its unix socket, or app_bind and the app port
        ([v6]:port for IPv6) for other hosts' nginx."""
        if self.app_on_socket:
            return str(self.app_socket)
        return f"{url_host(self.app_bind)}:{self.ports['app']}"

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
        """Uploads: local data, outside the code."""
        return self.root / "media"

    @property
    def maintenance_dir(self) -> Path:
        """`deploytool maintenance`'s flag files, which nginx looks for on every request:
        local state, never in git; nginx's group may enter it on a server (2750)."""
        return self.root / "maintenance"

    @property
    def maintenance_page(self) -> str:
        """The project's "back soon" page (in git, under the app's static files), as a path
        under STATIC_ROOT, where collectstatic puts it and nginx serves it from."""
        return f"/{self.project.project_slug}/maintenance.html"

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
    def jobs_cron(self) -> str:
        """/etc/cron.d/ file of the scheduled jobs (supervisor installs): cron skips names with a dot."""
        return f"{self.site}_jobs".replace(".", "_")

    @property
    def supervisord_conf(self) -> Path:
        """supervisor installs: the install's own supervisord, run as the project user (by the
        system's supervisord on a server, by `up` in a sandbox); it runs the app server."""
        return self.etc_dir / "supervisor" / "supervisord.conf"

    @property
    def supervisord_socket(self) -> Path:
        """supervisorctl's way to the install's own supervisord (mode 700: the user's alone)."""
        return self.run_dir / "supervisor.sock"

    @property
    def supervisord_program(self) -> str:
        """The system supervisord's program that runs the install's own supervisord."""
        return f"{self.site}_supervisord"

    def by_hand(self, verb: str) -> str:
        """How the project user starts or stops the app server: bin/appctl.sh, which goes
        through its manager (the systemd unit, the install's supervisord) where one runs."""
        return f"{self.ctl} {verb}"

    @property
    def deploytool(self) -> Path:
        """The entry point every command line names: it finds (or makes) the venv first."""
        return self.root / "bin" / "deploytool"

    @property
    def ctl(self) -> Path:
        return self.root / "bin" / "appctl.sh"

    # ---- the background worker (answer worker=celery) ----------------------------------
    @property
    def has_worker(self) -> bool:
        return self.project.worker == "celery"

    @property
    def worker_service(self) -> str:
        """systemd unit or supervisor program of the worker (<site>_celery)."""
        return self.service_of("celery")

    @property
    def workerctl(self) -> Path:
        return self.root / "bin" / "workerctl.sh"

    @property
    def worker_log(self) -> Path:
        """The worker's log: Celery reopens it by itself once logrotate has renamed it."""
        return self.log_dir / "celery.log"

    @property
    def worker_pidfile(self) -> Path:
        return self.run_dir / "celery.pid"

    @property
    def wsgi_app(self) -> str:
        return f"{self.project.project_slug}.wsgi:application"

    @property
    def app_workers(self) -> int:
        """The app server's processes: env.conf's APP_WORKERS, else from this host's cores
        and memory (sizing), decided when the configs are rendered."""
        return self.workers or sizing.app_workers(*sizing.host())

    @property
    def app_workers_why(self) -> str:
        """Where app_workers comes from, in words, for the rendered configs' comments."""
        return f"APP_WORKERS={self.workers} in env.conf" if self.workers else sizing.why(*sizing.host())

    @property
    def app_log(self) -> Path:
        """The app server's own log (what it and bin/appctl.sh print)."""
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
    def own_sandbox(self) -> bool:
        """The checkout's own sandbox (`up`): its runtime files go to a short path."""
        return self.system_root == self.root / ".sandbox"

    @property
    def runtime_dir(self) -> Path:
        """A sandbox's runtime files (sockets, pid files) live on a short path of their own:
        a unix socket path holds 107 bytes, and a checkout at /home/<user>/<domain>/<type>/
        with a long domain leaves too little for .sandbox/run/… . Named after the user, the
        install's first port and a digest of the checkout's path: two checkouts on one
        machine (a copy, or the hosts of a test fleet) never share one."""
        digest = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:8]
        return Path("/tmp") / f"dj-layout-{self.project.user}" / f"{self.ports['devserver']}-{digest}"

    @property
    def run_dir(self) -> Path:
        """Pid files, the uWSGI master FIFO, the control and dedicated servers' sockets:
        the project user's only (0750). Made at boot by tmpfiles.d on a server."""
        return self.runtime_dir / "run" if self.own_sandbox else self.system(f"/run/{self.site}")

    @property
    def socket_dir(self) -> Path:
        """The app server's socket, alone in a folder nginx's workers may enter (2750, group
        www-data on a server: the socket inherits the group, no other account gets in)."""
        return self.runtime_dir / "app" if self.own_sandbox else self.system(f"/run/{self.site}.app")

    @property
    def app_socket(self) -> Path:
        return self.socket_dir / f"{self.project.app_server}.sock"

    @property
    def stats_socket(self) -> Path:
        """uWSGI's stats server (JSON), for bin/appctl.sh's readiness check: off TCP."""
        return self.run_dir / "uwsgi-stats.sock"

    def socket_of(self, server: str) -> Path:
        """The unix socket of a dedicated server (redis, memcached), in the private run dir.
        PostgreSQL names its own: .s.PGSQL.<port> in the folder it is given."""
        if server == "postgresql":
            return self.run_dir / f".s.PGSQL.{self.ports['postgresql']}"
        return self.run_dir / f"{server}.sock"

    @property
    def sockets(self) -> list[Path]:
        """Every unix socket path the stack binds."""
        found = [self.app_socket, self.stats_socket, self.supervisord_socket]
        return found + [self.socket_of(name) for name in ("postgresql", "redis", "memcached")]

    def check_socket_paths(self) -> None:
        """Fail before anything starts when a socket path cannot bind (too long)."""
        for path in self.sockets:
            if len(os.fsencode(path)) > SOCKET_PATH_MAX:
                raise DeployError(
                    f"unix socket path {path} is {len(os.fsencode(path))} bytes, over Linux's {SOCKET_PATH_MAX}: "
                    "shorten the domain or the checkout's path (nothing was started)"
                )

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.project.app_server}.pid"

    @property
    def nginx_dir(self) -> Path:
        return self.system("/etc/nginx")

    @property
    def nginx_pidfile(self) -> Path:
        """nginx's pid file: Debian's on a server, the sandbox nginx's under its root."""
        return self.system("/run/nginx.pid")

    @property
    def nginx_error_log(self) -> Path:
        """Where nginx says why a config or a reload failed."""
        return self.log_dir / "nginx.error.log" if self.sandbox else self.system("/var/log/nginx/error.log")

    @property
    def final_site(self) -> str:
        """The nginx site that serves the app over HTTPS (and port 80's redirect)."""
        return f"{self.site}.nginx.conf"

    @property
    def bootstrap_site(self) -> str:
        """The nginx site that serves only the ACME challenge, until a certificate exists."""
        return f"{self.site}_letsencrypt.nginx.conf"

    @property
    def sites(self) -> list[str]:
        """The install's two nginx sites; exactly one is enabled (both answer port 80)."""
        return [self.final_site, self.bootstrap_site]

    def site_available(self, name: str) -> Path:
        return self.nginx_dir / "sites-available" / name

    def site_enabled(self, name: str) -> Path:
        return self.nginx_dir / "sites-enabled" / name

    @property
    def url(self) -> str:
        """The site's address, as a browser on this machine opens it."""
        return f"https://{self.site}{self.https_port_suffix}/"

    @property
    def nginx_htpasswd(self) -> Path:
        """The copy of etc/htpasswd that nginx reads (its workers cannot read the user's 600 file)."""
        return self.nginx_dir / "htpasswd" / self.site

    @property
    def letsencrypt_dir(self) -> Path:
        return self.system("/etc/letsencrypt")

    @property
    def cert_dir(self) -> Path:
        """certbot puts the site's certificate here (the lineage is named after the site)."""
        return self.letsencrypt_dir / "live" / self.site

    @property
    def issuer_file(self) -> Path:
        """The certificate's issuer (certbot's chain.pem), copied where the project user can
        read it: a deploy checks the site over HTTPS with it (live/ is root's alone)."""
        return self.system(f"/etc/ssl/dj-layout/{self.site}.issuer.pem")

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
        """Symlinks an install has: link -> target."""
        return {
            self.root / "logs": self.log_dir,
            self.root / "backups": self.backup_dir,
            self.settings_link: Path("../etc/settings_local.py"),
        }


def uid_of(user: str) -> int:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise DeployError(f"user {user!r} does not exist: useradd --create-home {user}") from None


def check_app_bind(address: str) -> str:
    """The app server's TCP address for other hosts' nginx (deploytool init --app-bind)."""
    return private_address(address, "app bind address (--app-bind)")


def app_bind_of(env: dict[str, str]) -> str:
    """APP_BIND of env.conf; 127.0.0.1 (what older installs wrote) means the unix socket."""
    value = env.get("APP_BIND", "")
    return "" if value in ("", "127.0.0.1") else value


def jobs_of(env: dict[str, str]) -> bool:
    """JOBS of env.conf: on (the default, also when older installs lack it) or off."""
    value = env.get("JOBS", "on")
    if value not in ("on", "off"):
        raise DeployError(f"JOBS={value!r} in env.conf: on or off (`deploytool init --jobs on|off`)")
    return value == "on"


def system_root_of(root: Path, setting: str) -> Path:
    """SYSTEM_ROOT of env.conf: absolute, or relative to the checkout (its own .sandbox/)."""
    path = Path(setting)
    return path if path.is_absolute() else root / path


def ensure_private_dir(path: Path, mode: int = 0o700) -> None:
    """A folder only the current user may use, in a place others can write (/tmp): made
    without following links, refused when it is a link or another account's, and closed
    (chmod) when it is ours but open to others."""
    for folder in (path.parent, path):
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            pass
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise DeployError(
                f"{folder} is not a folder of this user's (a link, or another account's): "
                "remove it, then run again (nothing was started)"
            )
        if stat.S_IMODE(info.st_mode) != mode:
            folder.chmod(mode)


def read_env_conf(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines (shell syntax, as ``source`` reads them)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DeployError(f"{path} is missing: run `bin/deploytool init --install-type dev|stage|pro`") from None
    return parse_env_conf(text)


def parse_env_conf(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = " ".join(shlex.split(value))
    return values
