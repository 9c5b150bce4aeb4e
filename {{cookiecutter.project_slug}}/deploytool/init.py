"""`deploytool init`: make this checkout an install of a given type (dev, stage, pro)."""

from __future__ import annotations

import argparse
import os
import secrets
import socket
from pathlib import Path

from . import localsettings, ports, proc, sizing
from .errors import DeployError
from .files import ensure_link, write_atomic
from .layout import ENV_CONF, MEDIA_WRITER, PROJECT_JSON, Install
from .project import Project
from .render import SETTINGS_LOCAL, render, render_text

ADMIN_USER = "admin"


def init(
    root: Path,
    install_type: str,
    system_root: Path = Path("/"),
    app_bind: str | None = None,
    workers: str | None = None,
    jobs: str | None = None,
    fleet_host: str | None = None,
) -> Install:
    """env.conf, settings_local.py (fresh secrets, 600), links, local folders, rendered configs.

    Idempotent: local data already there (settings_local.py, htpasswd) is kept as it is;
    a missing piece of the secrets is made again, the others are left alone. Without
    ``app_bind`` the address env.conf has is kept (the unix socket in a new install);
    likewise ``workers`` (the app server's processes; "" for the host's figure), ``jobs``
    (on or off: whether this host runs the scheduled jobs) and ``fleet_host`` (this host's
    section of etc/fleet.ini; "" for a single server).
    """
    env_conf = root / ENV_CONF
    current = Install.load(root) if env_conf.exists() else None
    if app_bind is None:
        app_bind = current.app_bind if current else ""
    processes = sizing.workers_setting(workers) if workers is not None else current.workers if current else None
    project = Project.load(root / PROJECT_JSON)
    runs_jobs = jobs == "on" if jobs is not None else current.jobs if current else True
    if fleet_host is None:
        fleet_host = current.fleet_host if current else ""
    install = Install(
        project, root, install_type, system_root, app_bind, workers=processes, jobs=runs_jobs, fleet_host=fleet_host
    )
    install.fleet_entry()  # a name fleet.ini does not have is refused before anything is written
    check_shared_secrets(install)
    if install.app_bind:
        check_local_address(install.app_bind)
    if current is not None:
        if current.install_type != install_type:
            raise DeployError(
                f"this checkout is already the {current.install_type!r} install ({env_conf}); "
                f"clone the repo again for a {install_type!r} install"
            )
    for link in install.links:  # fail before writing anything if a link cannot be made
        if link.exists() and not link.is_symlink():
            raise DeployError(f"{link} exists and is not a link: move it away, then run init again")

    close_folders(install)
    for line in ensure_secrets(install):
        print(line)
    make_links(install)
    render(install)
    return install


# Folders of the checkout and who may enter them. Other accounts never: data/ and etc/
# hold the database and the secrets. The root itself, static/ and media/ are opened to
# nginx's group (and only that) by the system part of `install`, where nginx must read.
PRIVATE_FOLDERS = {"data": 0o700, "etc": 0o700, "media": 0o750}
NGINX_MAY_ENTER = {"media"}  # besides the root: the group root's part gave stays


def close_folders(install: Install) -> None:
    """Make the local folders and take every permission for other accounts away from the
    checkout (useradd's homes and git's checkouts are world-readable)."""
    _close(install.root, 0o750, keep_group=True)
    for name, mode in PRIVATE_FOLDERS.items():
        folder = install.root / name
        folder.mkdir(mode=mode, exist_ok=True)
        _close(folder, mode, keep_group=name in NGINX_MAY_ENTER)
    close_database(install)


def check_shared_secrets(install: Install) -> None:
    """A host of a fleet with a data host uses that host's database (and Redis) with the
    passwords and SECRET_KEY of its settings_local.py: fresh ones made here would match
    nothing. Refused before anything is written, with the copy to make."""
    data = install.data_host
    if install.settings_local.exists() or data is None or "data" in install.roles:
        return
    servers = "database and cache are" if install.shares_cache else "database is"
    raise DeployError(
        f"{install.settings_local} is missing, and this host's {servers} {data.name}'s (etc/fleet.ini): "
        f"copy that host's file here first (scp -p {data.address}:{data.root}/etc/settings_local.py etc/; "
        "mode 600), then run init again. Nothing was written"
    )


def close_database(install: Install) -> None:
    """The SQLite file holds sessions and password hashes: the project user's only."""
    database = install.data_dir / "db.sqlite3"
    if database.is_file() and not database.is_symlink() and database.stat().st_mode & 0o077:
        database.chmod(0o600)


def _close(folder: Path, mode: int, keep_group: bool) -> None:
    """Drop the bits ``mode`` does not grant (a group root let in is kept where allowed)."""
    if folder.is_symlink() or folder.stat().st_uid != os.geteuid():
        return  # not ours to change (root's part manages it)
    allowed = mode | (0o2070 if keep_group else 0)
    current = folder.stat().st_mode & 0o7777
    if current & ~allowed:
        folder.chmod(current & allowed)


def ensure_secrets(install: Install) -> list[str]:
    """The trio of local secrets: settings_local.py, and with basic auth htpasswd and the
    admin password it hashes. Each missing piece is made, atomically with mode 600; a piece
    that is there is checked and kept. Returns what was made, for the user to read."""
    made = []
    if not install.settings_local.exists():
        settings = render_text(
            install,
            SETTINGS_LOCAL,
            secret_key=secrets.token_urlsafe(64),  # 86 characters, never 'django-insecure-'
            db_password=secrets.token_urlsafe(24),
            redis_password=secrets.token_urlsafe(24),  # a shared Redis's (URL-safe: it is in CELERY_BROKER_URL)
            media_password=secrets.token_urlsafe(24),  # the media store's writers'
            media_writer=MEDIA_WRITER,
        )
        write_atomic(install.settings_local, settings, 0o600)
        made.append(f"made {install.settings_local} (new SECRET_KEY and passwords)")
        if install.project.database == "postgresql" and (install.data_dir / "postgresql" / "PG_VERSION").exists():
            made.append(
                "  the PostgreSQL cluster in data/postgresql still has the old password: set the new one "
                "(ALTER ROLE … PASSWORD) or restore settings_local.py from a backup"
            )
    check_secret(install.settings_local, "SECRET_KEY")
    if install.runs_media_store and not install.media_htpasswd.exists():
        password = localsettings.media_password(install.settings_local)
        write_atomic(install.media_htpasswd, f"{MEDIA_WRITER}:{hash_password(password)}\n", 0o600)
        made.append(f"made {install.media_htpasswd} (the media store's writers, MEDIA_PASSWORD)")
    password_file = install.etc_dir / "admin_password"
    if install.project.admin_basic_auth:
        if not install.htpasswd.exists():
            password = secrets.token_urlsafe(18)
            write_atomic(password_file, f"{ADMIN_USER}:{password}\n", 0o600)
            write_atomic(install.htpasswd, f"{ADMIN_USER}:{hash_password(password)}\n", 0o600)
            made.append(f"made {install.htpasswd} and {password_file} (a new admin password)")
        else:
            check_secret(install.htpasswd, f"{ADMIN_USER}:")
            if not password_file.exists():
                made.append(
                    f"note: {password_file} is missing and the password cannot be read back from "
                    f"{install.htpasswd}: remove {install.htpasswd} and run init again for a new one"
                )
    return made


def check_secret(path: Path, marker: str) -> None:
    """A secret file that is there must be whole: an empty or cut file is refused by name,
    with what to do, rather than kept (and passed by `manage.py check`)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise DeployError(f"{path} cannot be read ({error.strerror}): fix it, or remove it and run init") from None
    if marker not in text:
        raise DeployError(
            f"{path} is {'empty' if not text.strip() else 'damaged'} (no {marker.rstrip(':')}): restore it from a "
            "backup, or remove it and run init again for a new one (sessions and logins then end)"
        )
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def make_links(install: Install) -> list[Path]:
    """Point logs/, backups/ and settings_local.py where this install's layout says."""
    return [link for link, target in install.links.items() if ensure_link(link, target)]


def check_local_address(address: str) -> None:
    """The app server can bind ``address`` on this host (it is one of this host's addresses)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError as error:
            raise DeployError(
                f"--app-bind {address}: not an address of this host ({error.strerror}): give one that "
                "`ip -brief address` lists (the private address other hosts' nginx reaches)"
            ) from None


def hash_password(password: str) -> str:
    """SHA-512 crypt, which nginx's auth_basic reads through the system's crypt()."""
    return proc.run(["openssl", "passwd", "-6", "-stdin"], "openssl passwd", input=password).strip()


def summary(install: Install) -> str:
    return "\n".join(
        [
            f"{install.install_type} install of {install.project.domain} in {install.root}",
            f"site {install.site}, service {install.service}",
            ports.describe(install.project.port_block_start, install.install_type, server=not install.sandbox),
        ]
    )


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--install-type", required=True, choices=list(ports.SLOTS))
    parser.add_argument(
        "--system-root",
        type=Path,
        default=Path("/"),
        help="where /etc, /var and /run are (default /; a folder for a sandbox)",
    )
    parser.add_argument(
        "--app-bind",
        metavar="ADDRESS",
        help="this host's private address, for other hosts' nginx (default: a unix socket; kept when omitted)",
    )
    parser.add_argument(
        "--app-workers",
        metavar="N",
        help="the app server's processes (default: one per core and one more, within half the memory; "
        "'' for that; kept when omitted)",
    )
    parser.add_argument(
        "--jobs",
        choices=["on", "off"],
        help="whether this host runs the scheduled jobs and Celery beat: off on every host of a fleet but one "
        "(default on; kept when omitted)",
    )
    parser.add_argument(
        "--fleet-host",
        metavar="NAME",
        help="this host's section of etc/fleet.ini, whose roles it takes (default: none, a single server "
        "with every role; '' for that; kept when omitted)",
    )


def run(args: argparse.Namespace) -> int:
    root, system_root = args.root, args.system_root.resolve()
    made = init(root, args.install_type, system_root, args.app_bind, args.app_workers, args.jobs, args.fleet_host)
    print(summary(made))
    return 0
