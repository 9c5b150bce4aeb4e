"""The install's own copies of PostgreSQL, Redis and memcached, and a fleet's media store:
dedicated servers on ports of the block or unix sockets, logs beside the app's, run as the
project user.

Host and port come from settings_local.py, the install's local truth (never assumed);
the port map only proposes them when init writes that file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import localsettings, proc
from .errors import MissingProgram
from .layout import Install
from .proc import pid_alive
from .sockets import unix_listening


@dataclass
class PostgreSQL:
    """A cluster in data/postgresql, owned by the project user."""

    install: Install
    name = "postgresql"

    @property
    def data(self) -> Path:
        return self.install.data_dir / "postgresql"

    @property
    def db(self) -> dict[str, str]:
        """Host, port, names and password from settings_local.py, parsed, never run."""
        return localsettings.database(self.install.settings_local, self.install.owner_uid)

    def running(self) -> bool:
        return pid_alive(self.data / "postmaster.pid")

    def options(self) -> list[str]:
        """Where it listens: the host and port of settings_local.py, its socket in the run dir."""
        db = self.db
        return [
            "-c",
            f"listen_addresses={db['HOST']}",
            "-p",
            db["PORT"],
            "-c",
            f"unix_socket_directories={self.install.run_dir}",
            "-c",
            "unix_socket_permissions=0700",  # the project user's only, as its folder
            "-c",
            f"hba_file={self.hba_file}",  # who may connect: rendered from etc/fleet.ini
        ]

    def where(self) -> str:
        db = self.db
        return f"{db['HOST']}:{db['PORT']} (password, scram-sha-256) and a unix socket in {self.install.run_dir}"

    @property
    def hba_file(self) -> Path:
        return self.install.etc_dir / "postgresql" / "pg_hba.conf"

    @property
    def fleet_file(self) -> Path:
        """What it re-reads when etc/fleet.ini changes: who may connect."""
        return self.hba_file

    def foreground(self) -> list[str]:
        """The server in the foreground, as systemd or supervisor runs it (logs on stderr)."""
        return [str(proc.postgresql_bin("postgres")), "-D", str(self.data), *self.options()]

    def prepare(self) -> bool:
        """The cluster, once: initdb as the project user, the password from settings_local.py.
        Returns whether it made it."""
        if (self.data / "PG_VERSION").exists():
            return False
        db = self.db
        with tempfile.NamedTemporaryFile("w", dir=self.install.data_dir) as pwfile:
            pwfile.write(db["PASSWORD"] + "\n")
            pwfile.flush()
            proc.run(
                [
                    proc.postgresql_bin("initdb"),
                    "-D",
                    self.data,
                    "-U",
                    db["USER"],
                    "--pwfile",
                    pwfile.name,
                    "-A",
                    "scram-sha-256",
                    "-E",
                    "UTF8",
                ],
                "initdb",
            )
        return True

    def start(self) -> None:
        """In a sandbox: pg_ctl starts it in the background, its log in the log dir."""
        self.prepare()
        if not self.running():
            log = self.install.log_dir / "postgresql.log"
            options = " ".join(self.options())
            proc.run(
                [proc.postgresql_bin("pg_ctl"), "-D", self.data, "-o", options, "-l", log, "-w", "start"],
                "pg_ctl start",
            )
        self.ensure_database()

    def ensure_database(self) -> None:
        """The project's database in the running cluster (createdb once)."""
        db = self.db
        env = {**os.environ, "PGPASSWORD": db["PASSWORD"]}
        where = ["-h", db["HOST"], "-p", db["PORT"], "-U", db["USER"]]
        query = f"SELECT 1 FROM pg_database WHERE datname = '{db['NAME']}'"
        exists = proc.attempt([proc.postgresql_bin("psql"), *where, "-d", "postgres", "-tAc", query], env=env)
        if exists.stdout.strip() != "1":
            proc.run([proc.postgresql_bin("createdb"), *where, db["NAME"]], "createdb", env=env)

    def stop(self) -> None:
        if self.running():
            proc.run([proc.postgresql_bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"], "pg_ctl stop")

    def reload(self) -> bool:
        """Re-read pg_hba.conf (SIGHUP through the pid file: the cluster is the project user's,
        whichever manager runs it); False when it is not running (it reads the file at start)."""
        if not self.running():
            return False
        proc.run([proc.postgresql_bin("pg_ctl"), "-D", self.data, "reload"], "pg_ctl reload")
        return True


@dataclass
class _Daemon:
    """A server that daemonizes itself and writes a pid file in the run dir."""

    install: Install
    name = ""

    @property
    def pidfile(self) -> Path:
        return self.install.run_dir / f"{self.name}.pid"

    def command(self, foreground: bool) -> list[str]:
        """The server's command line: daemonized with a pid file (a sandbox), or in the
        foreground (systemd, supervisor)."""
        raise NotImplementedError

    def foreground(self) -> list[str]:
        return self.command(foreground=True)

    def running(self) -> bool:
        """Its pid file names a live process (started daemonized, in a sandbox), or its
        socket listens (run in the foreground by systemd or supervisor, without a pid file)."""
        return pid_alive(self.pidfile) or unix_listening(self.install.socket_of(self.name))

    def start(self) -> None:
        if self.running():
            return
        proc.run(self.command(foreground=False), self.name)
        proc.wait_until(self.running, f"{self.name} writing its pid file")

    def stop(self) -> None:
        if not pid_alive(self.pidfile):  # only what `up` started (a manager's has no pid file here)
            return
        os.kill(int(self.pidfile.read_text().split()[0]), 15)
        proc.wait_until(lambda: not self.running(), f"{self.name} stopping")
        self.pidfile.unlink(missing_ok=True)


class Redis(_Daemon):
    """The install's Redis: a cache, and the background worker's queue with worker=celery.
    On a single server, no TCP: its unix socket (660) is in the run dir, which only the
    project user enters, so no other local account reaches it without a password.

    On the data host of a fleet it is the site's shared cache and session store: it listens
    on the private address and port of settings_local.py too, and its default user needs
    REDIS_PASSWORD. The command line carries only the password's SHA-256 (Redis's ACL keeps
    no more): ps and the unit file show a hash of 24 random bytes, never the password."""

    name = "redis"

    def listening(self) -> list[str]:
        if not self.install.shares_cache:
            return ["--port", "0"]
        password = localsettings.redis_password(self.install.settings_local, self.install.owner_uid)
        digest = hashlib.sha256(password.encode()).hexdigest()
        address = self.install.data_address
        port = str(self.install.ports["redis"])
        # resetpass first: the default user's "nopass" goes, only the hash admits. -@admin: an
        # app host holding the password still cannot CONFIG SET the data host's Redis into
        # writing files there, load a module, or shut it down; the cache and Celery need none.
        acl = ["default", "on", "resetpass", f"#{digest}", "~*", "&*", "+@all", "-@admin"]
        return ["--bind", address, "--port", port, "--user", *acl]

    def where(self) -> str:
        socket = f"a unix socket of mode 660 in {self.install.run_dir}"
        if not self.install.shares_cache:
            return f"{socket}, the project user's only (no password of its own)"
        return f"{self.install.data_address}:{self.install.ports['redis']} (REDIS_PASSWORD) and {socket}"

    def command(self, foreground: bool) -> list[str]:
        return [
            proc.program("redis-server"),
            *self.listening(),
            "--unixsocket",
            str(self.install.socket_of("redis")),
            "--unixsocketperm",
            "660",
            "--daemonize",
            "no" if foreground else "yes",
            # tells systemd when it is ready (Type=notify); nothing under supervisor
            *(["--supervised", "auto"] if foreground else []),
            "--pidfile",
            str(self.pidfile),
            "--logfile",
            str(self.install.log_dir / "redis.log"),
            "--save",
            "",
            *self.persistence,
        ]

    @property
    def persistence(self) -> list[str]:
        """A cache needs none; a worker's queue must outlive a restart: an append-only file
        in data/ (local data, in the backups' folder tree), synced every second."""
        if self.install.project.worker != "celery":
            return ["--appendonly", "no", "--dir", str(self.install.run_dir)]
        return ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.install.data_dir)]


class Memcached(_Daemon):
    """memcached on a unix socket of mode 660 in the private run dir: it has no password,
    so no TCP (-s turns TCP and UDP off; UDP is an amplification vector anyway)."""

    name = "memcached"

    def command(self, foreground: bool) -> list[str]:
        argv = [proc.program("memcached"), "-s", str(self.install.socket_of("memcached")), "-a", "0660", "-m", "64"]
        return argv if foreground else [*argv, "-d", "-P", str(self.pidfile)]

    def where(self) -> str:
        return f"a unix socket of mode 660 in {self.install.run_dir}, the project user's only (no password of its own)"


class MediaStore(_Daemon):
    """The site's uploads on a fleet's data host: an nginx of the install's own, run as the
    project user like its PostgreSQL, over media/, on the private address and the block's
    media port. The app hosts write with MEDIA_PASSWORD (HTTP PUT and DELETE: nginx's WebDAV
    module, which writes a body aside and renames it into place, so a reader gets a whole
    file or none); the fronts and the app hosts read. Its config: etc/nginx/<site>_media.conf."""

    name = "media"

    def argv(self, *args: str, foreground: bool = False) -> list[str]:
        conf, log = self.install.media_store_conf, self.install.log_dir / "media.error.log"
        # The pid file on the command line, not in the config: one name, deploytool's.
        directives = f"pid {self.pidfile};" + (" daemon off;" if foreground else "")
        return [proc.program("nginx"), "-c", str(conf), "-e", str(log), "-g", directives, *args]

    def command(self, foreground: bool) -> list[str]:
        return self.argv(foreground=foreground)

    def running(self) -> bool:
        return pid_alive(self.pidfile)

    @property
    def fleet_file(self) -> Path:
        """What it re-reads when etc/fleet.ini changes: its config, which names the hosts."""
        return self.install.media_store_conf

    def where(self) -> str:
        readers = "the fronts and app hosts read, the app hosts write with MEDIA_PASSWORD"
        return f"{self.install.media_store_address} ({readers})"

    def start(self) -> None:
        proc.run(self.argv("-t", "-q"), "nginx -t of the media store")
        super().start()

    def reload(self) -> bool:
        """Re-read its config (the fleet's addresses); False when it is not running."""
        if not self.running():
            return False
        proc.run(self.argv("-s", "reload"), "media store reload")
        return True


Server = PostgreSQL | Redis | Memcached | MediaStore


def for_install(install: Install) -> list[Server]:
    """The dedicated copies this install's answers ask for, in start order."""
    chosen: list[Server] = []
    if install.project.database == "postgresql" and install.runs_database:
        chosen.append(PostgreSQL(install))
    if install.project.cache == "redis" and install.runs_database:
        chosen.append(Redis(install))
    elif install.project.cache == "memcached":
        chosen.append(Memcached(install))
    if install.runs_media_store:
        chosen.append(MediaStore(install))
    return chosen


def fleet_readers(install: Install) -> list[PostgreSQL | MediaStore]:
    """This host's servers whose config names the fleet's hosts (pg_hba.conf, the media
    store's allow lists): a render that changes one must be followed by its reload."""
    return [server for server in for_install(install) if isinstance(server, PostgreSQL | MediaStore)]


def database_of(install: Install) -> PostgreSQL | None:
    """The install's own PostgreSQL, when this host runs one."""
    return next((server for server in for_install(install) if isinstance(server, PostgreSQL)), None)


@dataclass
class Dedicated:
    """One dedicated server as the systemd unit and supervisor program templates see it."""

    name: str  # postgresql, redis, memcached, media
    unit: str  # its systemd unit or supervisor program name
    command: list[str]  # in the foreground
    where: str  # where it listens, for the unit's comment
    missing: str  # how to install its program, when it was not found at render time


def for_templates(install: Install) -> dict[str, Dedicated]:
    """name -> what the templates render for it. A program not installed when rendering
    still renders, as a placeholder command with a note saying how to install it; `deploytool
    check` fails on it (systemd-analyze verify, the supervisor check: no such file)."""
    found = {}
    for server in for_install(install):
        try:
            command, missing = server.foreground(), ""
        except MissingProgram as error:  # anything else (a bad settings_local.py) stops the render
            command, missing = [f"/usr/bin/{server.name}"], str(error)
        found[server.name] = Dedicated(server.name, install.service_of(server.name), command, server.where(), missing)
    return found
