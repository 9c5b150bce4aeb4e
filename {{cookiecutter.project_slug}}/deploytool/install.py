"""`deploytool install`: put an install in place on a server, step by step.

Two parts, because they need different users:
- system (root on a server): the rendered configs copied to their places under /etc, the
  nginx site enabled, the log, backup and run folders owned by the project user;
- user (the project user): the venv named after its Python, the requirements, migrate,
  collectstatic.
In a sandbox (the system root is a folder the user owns) one user does both.
Every step is idempotent: it reports what it changed, and a second run changes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import grp
import os
import pwd
import re
import shlex
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from . import firewall, migrations, nginx, proc, requirements
from .dedicated import database_of, for_install, for_templates
from .errors import DeployError
from .files import open_no_links, prune, read_user_file, write_atomic
from .init import close_database, make_links
from .jobs import for_host as jobs_here
from .layout import CODE_ROOT, NGINX_GROUP, NGINX_USER, Install, ensure_private_dir
from .render import FIREWALL, outputs, render, render_all

# Rendered files that stay in the install's etc/ (the app server reads them from there).
# What the project user's own processes read: rendered in the checkout, never installed.
STAY_LOCAL = {
    "env.conf.j2",
    "uwsgi.yaml.j2",
    "gunicorn.conf.py.j2",
    "supervisor/supervisord.conf.j2",  # the install's own supervisord, not the system's
    "supervisor/app.conf.j2",  # its program: in conf.d root's supervisord would run it too
    "supervisor/worker.conf.j2",  # the worker's program, beside the app's
    "postgresql/pg_hba.conf.j2",  # the install's own PostgreSQL reads it from etc/
    "nginx/media.conf.j2",  # and the media store its nginx.conf
}
INSTALLED = "installed.list"  # root's record of what the system part put in place
HTPASSWD_LINE = re.compile(rb"^[A-Za-z0-9_.@-]{1,64}:\$(6|5|2[aby]|apr1)\$[./0-9A-Za-z$]{8,200}$")


def system_texts(install: Install) -> dict[Path, tuple[str, int]]:
    """System config -> (text, mode), rendered in memory from the templates of the code
    that runs (etc/ mirrors /etc). Nothing is copied from the checkout's etc/: those files
    are the user's, and on a server the system part renders from root's own copy."""
    rendered = render_all(install)
    return {target: rendered[path] for path, target in system_files(install).items()}


def system_files(install: Install) -> dict[Path, Path]:
    """Rendered file in etc/ -> its place under the system root: what a deploy reports."""
    return {
        path: install.system("/etc") / path.relative_to(install.etc_dir)
        for template, path in outputs(install).items()
        if template not in STAY_LOCAL
    }


def state_dir(install: Install) -> Path:
    """The system part's own records (what it installed), root's only on a server: never a
    file of the checkout, which the project user could edit."""
    return install.system(f"/var/lib/dj-layout/{install.site}")


def install_system(install: Install) -> Iterator[str]:
    missing = [server.missing for server in for_templates(install).values() if server.missing]
    if missing and not install.sandbox:
        raise DeployError(
            f"{'; '.join(missing)}: the {install.project.process_manager} config of a server that cannot run is "
            "not installed; install it, then run the system part again (nothing was changed)"
        )
    user = pwd.getpwnam(install.project.user)
    server = os.geteuid() == 0  # root: owners and nginx's group are set, the checkout is only read
    yield from _system_folders(install, user, server)
    texts = system_texts(install)
    for target, (text, mode) in texts.items():
        if write_atomic(target, text, mode):
            yield f"installed {target}"
    state = state_dir(install)
    state.mkdir(parents=True, mode=0o700, exist_ok=True)
    owned = lambda path: path.name.startswith(install.site)  # noqa: E731 - only this install's files
    for stale in prune(state / INSTALLED, install.system_root, set(texts), owned):
        yield f"removed {stale} (no longer rendered)"
    if server and not install.sandbox:
        yield from load_firewall(install)
    if install.project.admin_basic_auth:
        yield from _install_htpasswd(install, user if server else None)
    if not server:
        for link in make_links(install):  # on a server the user's init made them: root writes nothing there
            yield f"linked {link.name} -> {os.readlink(link)}"
    yield from nginx.enable(install, nginx.wanted_site(install))


def load_firewall(install: Install) -> Iterator[str]:
    """The install's nftables rules, loaded now (its unit loads them at every boot). One
    transaction that replaces the install's own table: SSH and every other rule stay as
    they are, so the session that runs this is never cut."""
    rendered = outputs(install).get(FIREWALL)
    if rendered is None:
        return
    rules = system_files(install)[rendered]
    proc.run([proc.program("nft"), "-f", rules], "nft -f")
    yield f"loaded {rules} (nftables table inet {firewall.table(install)})"


def _system_folders(install: Install, user: pwd.struct_passwd, server: bool) -> Iterator[str]:
    """Logs, backups, the run and socket folders; on a server also nginx's way into the
    checkout (its group on the root, static/ and media/, nothing else)."""
    nginx_gid = grp.getgrnam(NGINX_GROUP).gr_gid if server else user.pw_gid
    if install.own_sandbox:
        ensure_private_dir(install.runtime_dir)
    folders = {
        install.log_dir: (0o750, user.pw_gid),
        install.backup_dir: (0o750, user.pw_gid),
        install.run_dir: (0o750, user.pw_gid),
        install.socket_dir: (0o2750, nginx_gid),
    }
    for folder, (mode, gid) in folders.items():
        made = not folder.is_dir()
        if made:
            folder.mkdir(parents=True, mode=mode & 0o777)
        if server:
            os.chown(folder, user.pw_uid, gid, follow_symlinks=False)
        if folder.stat().st_mode & 0o7777 != mode:
            folder.chmod(mode)
        if made:
            yield f"made {folder}"
    for folder in (install.acme_webroot, install.system("/var/lib/nginx")):
        if not folder.is_dir():
            folder.mkdir(parents=True)
            yield f"made {folder}"
    if server:
        yield from _open_to_nginx(install, user, nginx_gid)


# Where nginx's workers must get in: the root only to pass through, static/ and media/ to
# read (setgid: what collectstatic and uploads add inherits nginx's group), maintenance/ to
# look for `deploytool maintenance`'s flag files.
NGINX_ENTERS = {".": 0o710, "static": 0o2750, "media": 0o2750, "maintenance": 0o2750}


def _open_to_nginx(install: Install, user: pwd.struct_passwd, gid: int) -> Iterator[str]:
    """Give nginx's group its way in, through descriptors opened without following links:
    a folder the user swapped for a link is refused, never followed."""
    uid = user.pw_uid
    root_fd = open_no_links(install.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name, mode in NGINX_ENTERS.items():
            if name != "." and name not in os.listdir(root_fd):
                os.mkdir(name, 0o750, dir_fd=root_fd)  # before collectstatic: made as the user's
                os.chown(name, uid, user.pw_gid, dir_fd=root_fd, follow_symlinks=False)
            fd = root_fd if name == "." else os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd)
            try:
                info = os.fstat(fd)
                if info.st_uid != uid:
                    raise DeployError(f"{install.root / name} does not belong to {install.project.user}: refused")
                if info.st_gid != gid or info.st_mode & 0o7777 != mode:
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, mode)
                    yield f"opened {install.root / name} to {NGINX_GROUP} (mode {mode:o})"
            finally:
                if fd != root_fd:
                    os.close(fd)
    except OSError as error:
        raise DeployError(f"{install.root}: {error.strerror} on the way to nginx's folders: refused") from None
    finally:
        os.close(root_fd)


def _install_htpasswd(install: Install, user: pwd.struct_passwd | None) -> Iterator[str]:
    """nginx's copy of etc/htpasswd: read without following links, a regular file of the
    project user's, and only lines that are user:crypt-hash; anything else is refused."""
    if not install.htpasswd.exists() and not install.htpasswd.is_symlink():
        yield f"skipped {install.nginx_htpasswd}: {install.htpasswd} is missing (deploytool init makes it)"
        return
    data = read_user_file(install.htpasswd, user.pw_uid if user else None, limit=65536)
    lines = data.splitlines()
    if not lines or not all(HTPASSWD_LINE.match(line) for line in lines):
        raise DeployError(f"{install.htpasswd} is not an htpasswd file (user:crypt-hash lines): refused")
    owner = NGINX_USER if user else None  # as root: nginx's workers; in a sandbox: its user
    if write_atomic(install.nginx_htpasswd, data.decode(), 0o600, owner):
        yield f"installed {install.nginx_htpasswd} (mode 600)"


def install_user(install: Install, migrate: bool = True) -> Iterator[str]:
    if not install.python.exists():
        python = shutil.which(f"python{install.project.python_version}", path="/usr/bin:/usr/local/bin")
        if python is None:
            raise DeployError(
                f"python{install.project.python_version} not found: apt-get install "
                f"python{install.project.python_version} python{install.project.python_version}-venv"
            )
        proc.run([python, "-m", "venv", install.venv], "make the venv")
        yield f"made {install.venv}"
    if not requirements.met(install) and "Successfully installed" in requirements.pip_install(install, "install"):
        yield "installed requirements"
    yield from database_ready(install)
    migrating = migrate and install.migrates
    out = migrations.manage_in_one(install, *(["migrate --noinput"] if migrating else []), "collectstatic --noinput")
    close_database(install)
    if migrating and "Applying" in out:
        yield "applied migrations"
    if not any(line.startswith("0 static files copied") for line in out.splitlines()):
        yield "collected static files"


def database_ready(install: Install) -> Iterator[str]:
    """The dedicated PostgreSQL, if the answers chose it, runs and has the project's
    database: migrate needs it. Its cluster is made here (as the project user); the
    process manager runs it (in a sandbox, `up` has started it)."""
    database = database_of(install)
    if database is None:
        return
    if database.prepare():
        yield f"made the PostgreSQL cluster {database.data}"
    if not database.running():
        unit = install.service_of(database.name)
        start = (
            f"systemctl daemon-reload && systemctl enable --now {unit}"
            if install.project.process_manager == "systemd"
            else f"supervisorctl reread && supervisorctl update {unit}"  # that program alone: not the app yet
        )
        raise DeployError(f"the install's PostgreSQL ({unit}) is not running: as root, {start}; then run this again")
    database.ensure_database()


def put_in_place(
    install: Install, part: str, report: Callable[[str], None] | None = None, migrate: bool = True
) -> list[str]:
    """Run the system part, the user part, or both; returns what changed, and tells
    ``report`` each change as it is made (a failure then shows what was done before it)."""
    root = os.geteuid() == 0
    if part in ("system", "all"):
        if not root and not install.sandbox:
            raise DeployError(
                f"the system part writes under {install.system_root}: run it as root, from root's own copy "
                f"of the project: {root_command(install)}"
            )
        if root:
            trusted_code(install)
    if part in ("user", "all"):
        if root:
            raise DeployError(
                f"the user part runs as {install.project.user}, never as root: "
                f"runuser -u {install.project.user} -- {install.deploytool} install --part user"
            )
    if not root:
        render(install)  # the user's own rendered copies (env.conf, the app server's config)
    changes: list[str] = []
    steps = [install_system] if part in ("system", "all") else []
    steps += [lambda install: install_user(install, migrate)] if part in ("user", "all") else []
    for step in steps:
        for change in step(install):
            changes.append(change)
            if report is not None:
                report(change)
    return changes


# Where root keeps its own copy of the project's code, one per install (README).
ROOT_COPIES = "/usr/local/lib/dj-layout"


def root_command(install: Install) -> str:
    """The commands an admin runs for the system part: a root-owned clone, then deploytool
    from it, pointed at the user's checkout as data."""
    copy = f"{ROOT_COPIES}/{install.site}"
    return (
        f"git clone --branch <the install's revision> <the project's repository> {copy}; "
        f"{copy}/bin/deploytool --root {install.root} install --part system"
    )


def first_system_part(install: Install) -> str:
    """The system part on a host where it never ran: root's own clone of the project at this
    checkout's revision, then the part run from it (the same as root_command, filled in)."""
    copy = f"{ROOT_COPIES}/{install.site}"
    git = ["git", "-C", str(install.root)]
    repository = proc.attempt([*git, "remote", "get-url", "origin"]).stdout.strip() or "<the project's repository>"
    revision = proc.attempt([*git, "rev-parse", "HEAD"]).stdout.strip() or "<the install's revision>"
    return (
        f"git clone -q {shlex.quote(repository)} {copy} && git -C {copy} checkout -q {revision} && "
        f"{copy}/bin/deploytool --root {install.root} install --part system"
    )


def trusted_code(install: Install) -> None:
    """Root runs only code that root owns: deploytool, the templates it renders and the
    answers file must be root's copy, in folders no other account can write. The user's
    checkout is read as data (env.conf's install type and address, settings_local's
    database, htpasswd), never imported, rendered from or executed."""
    code = install.code_root
    if code is None or code.resolve() == install.root.resolve():
        raise DeployError(
            "as root, the system part never runs the project user's code (whoever owns the checkout "
            f"would own root): {root_command(install)}"
        )
    paths = [*code.resolve().parents, code / "deploytool", code / "etc" / "project.json"]
    paths += sorted((code / "deploytool").rglob("*")) + sorted(install.templates.rglob("*"))
    for path in [code, install.templates, *paths]:
        info = path.lstat()
        writable = info.st_mode & 0o022 and not (stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX)
        if info.st_uid != 0 or writable or stat.S_ISLNK(info.st_mode) and path.is_relative_to(code):
            raise DeployError(
                f"{path} is not root's alone (owner uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}): "
                f"the system part runs from a copy only root can change: {root_command(install)}"
            )


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        dest="system_root",
        type=Path,
        help="system root to install under (default: env.conf's; as root: /)",
    )
    parser.add_argument(
        "--part",
        choices=["system", "user", "all"],
        help="system (as root), user (as the project user); default: what the current user may do",
    )
    parser.add_argument(
        "--skip-migrate",
        action="store_true",
        help="the user part without migrate: a host joining a site whose database is migrated already",
    )


def run(args: argparse.Namespace) -> int:
    part = args.part
    if os.geteuid() == 0 and part in (None, "system"):
        # root reads the user's checkout as data only, with the code and answers of this copy
        system_root = (args.system_root or Path("/")).resolve()
        current = Install.for_root(CODE_ROOT, args.root, system_root)
        part = "system"
    else:
        current = Install.load(args.root)
        if args.system_root is not None:
            current = dataclasses.replace(current, system_root=args.system_root.resolve())
        if part is None:
            part = "all" if current.sandbox else "user"
    migrate = not args.skip_migrate
    changes = put_in_place(current, part, report=lambda line: print(line, flush=True), migrate=migrate)
    if not changes:
        print(f"install ({part}): no change")
    print(f"next: {next_step(current, part)}")
    return 0


def next_step(install: Install, part: str) -> str:
    """What the admin runs after this part, in the order a server needs: the user part
    migrates before the app server starts; the certificate comes once nginx serves port 80."""
    user = install.project.user
    if install.own_sandbox:
        return f"{install.deploytool} up"
    if part == "system":
        return (
            f"as {user}, in {install.root}: {install.deploytool} install --part user "
            "(venv, requirements, migrate, collectstatic)"
        )
    if install.project.process_manager == "systemd":
        # the app, its cache server (PostgreSQL runs already: migrate needed it), the jobs'
        # timers; a front or a data host of a fleet without the role app runs no app server
        app = [install.service] if install.serves_app else []
        caches = [install.service_of(server.name) for server in for_install(install) if server.name != "postgresql"]
        worker = [install.worker_service] if install.has_worker and install.serves_app else []
        timers = [f"{job.unit(install)}.timer" for job in jobs_here(install)]
        units = [*app, *caches, *worker, *timers]
        start = "systemctl daemon-reload" + (f" && systemctl enable --now {' '.join(units)}" if units else "")
    else:  # the install's own supervisord (it runs the app) and its servers; cron runs the jobs
        start = "systemctl daemon-reload && supervisorctl reread && supervisorctl update"
    if FIREWALL in outputs(install):  # loaded by the system part; at every boot once enabled
        start += f" && systemctl enable {install.service_of('firewall')}"
    if part == "user" and not install.run_dir.is_dir():  # the system part makes it: it never ran here
        start = f"{first_system_part(install)} && {start}"
    if "front" not in install.roles and not install.serves_app:
        return f"as root: {start} (a data host: no site, no certificate here)"
    return f"as root: {start}; then, as root, `deploytool cert` for the site's certificate"
