"""`deploytool install`: put an install in place on a server (seed 000, step by step).

Two parts, because they need different users:
- system (root on a server): the rendered configs copied to their places under /etc, the
  nginx site enabled, the log, backup and run folders owned by the project user;
- user (the project user): the venv named after its Python, the requirements, migrate,
  collectstatic.
In a sandbox (the system root is a folder the user owns) one user does both.
Every step is idempotent: it reports what it changed, and a second run changes nothing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .certs import has_certificate
from .errors import DeployError
from .files import ensure_link, prune
from .init import make_links
from .layout import Install
from .render import outputs, render
from .services import PostgreSQL, for_install

# Rendered files that stay in the install's etc/ (the app server reads them from there).
STAY_LOCAL = {"env.conf.j2", "uwsgi.yaml.j2", "gunicorn.conf.py.j2"}
NGINX_USER = "www-data"  # Debian's nginx workers read the htpasswd copy
INSTALLED = "installed.list"  # local: what the last install put under the system root


def system_files(install: Install) -> dict[Path, Path]:
    """Rendered file in etc/ -> its place under the system root (etc/ mirrors /etc)."""
    return {
        source: install.system("/etc") / source.relative_to(install.etc_dir)
        for template, source in outputs(install).items()
        if template not in STAY_LOCAL
    }


def enabled_site(install: Install) -> str:
    """The final HTTPS site once a certificate exists; until then the bootstrap site,
    which serves only the ACME challenge on port 80 (seed 000 §3.1)."""
    suffix = ".nginx.conf" if has_certificate(install) else "_letsencrypt.nginx.conf"
    return install.site + suffix


def install_system(install: Install) -> Iterator[str]:
    user = pwd.getpwnam(install.project.user)
    chown = os.geteuid() == 0
    for folder in (install.log_dir, install.backup_dir, install.run_dir):
        if not folder.is_dir():
            folder.mkdir(parents=True, mode=0o750)
            if chown:
                os.chown(folder, user.pw_uid, user.pw_gid)
            yield f"made {folder}"
    for folder in (install.acme_webroot, install.system("/var/lib/nginx")):
        if not folder.is_dir():
            folder.mkdir(parents=True)
            yield f"made {folder}"
    for source, target in system_files(install).items():
        if _copy(source, target, source.stat().st_mode & 0o777):
            yield f"installed {target}"
    for stale in prune(install.etc_dir / INSTALLED, set(system_files(install).values())):
        yield f"removed {stale} (no longer rendered)"
    if install.htpasswd.exists():
        owner = NGINX_USER if chown else None  # as root: nginx's workers; in a sandbox: its user
        if _copy(install.htpasswd, install.nginx_htpasswd, 0o600, owner):
            yield f"installed {install.nginx_htpasswd} (mode 600)"
    for link in make_links(install):
        if chown:
            os.lchown(link, user.pw_uid, user.pw_gid)
        yield f"linked {link.name} -> {os.readlink(link)}"
    enabled = install.nginx_dir / "sites-enabled"
    for name in (f"{install.site}.nginx.conf", f"{install.site}_letsencrypt.nginx.conf"):
        link = enabled / name
        if name != enabled_site(install) and link.is_symlink():
            link.unlink()
            yield f"disabled {link}"
    if ensure_link(enabled / enabled_site(install), Path("../sites-available") / enabled_site(install)):
        yield f"enabled {enabled / enabled_site(install)}"


def install_user(install: Install) -> Iterator[str]:
    if not install.python.exists():
        python = shutil.which(f"python{install.project.python_version}", path="/usr/bin:/usr/local/bin")
        if python is None:
            raise DeployError(
                f"python{install.project.python_version} not found: apt-get install "
                f"python{install.project.python_version} python{install.project.python_version}-venv"
            )
        _run([python, "-m", "venv", install.venv], "make the venv")
        yield f"made {install.venv}"
    pip = _run(
        [
            install.python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-r",
            install.root / "requirements.txt",
        ],
        "pip install -r requirements.txt",
    )
    if "Successfully installed" in pip:
        yield "installed requirements"
    yield from database_ready(install)
    manage = [install.python, install.root / "manage.py"]
    if "Applying" in _run([*manage, "migrate", "--noinput"], "manage.py migrate"):
        yield "applied migrations"
    collected = _run([*manage, "collectstatic", "--noinput"], "manage.py collectstatic")
    if not collected.lstrip().startswith("0 static files copied"):
        yield "collected static files"


def database_ready(install: Install) -> Iterator[str]:
    """The dedicated PostgreSQL, if the answers chose it, runs and has the project's
    database: migrate needs it. Its cluster is made here (as the project user); the
    process manager runs it (in a sandbox, `up` has started it)."""
    database = next((s for s in for_install(install) if isinstance(s, PostgreSQL)), None)
    if database is None:
        return
    if database.prepare():
        yield f"made the PostgreSQL cluster {database.data}"
    if not database.running():
        unit = install.service_of(database.name)
        start = (
            f"systemctl daemon-reload && systemctl enable --now {unit}"
            if install.project.process_manager == "systemd"
            else f"supervisorctl update && supervisorctl start {unit}"
        )
        raise DeployError(f"the install's PostgreSQL ({unit}) is not running: as root, {start}; then run this again")
    database.ensure_database()


def install(install: Install, part: str) -> list[str]:
    """Run the system part, the user part, or both; returns what changed."""
    render(install)
    root = os.geteuid() == 0
    if part in ("system", "all"):
        if not root and not install.sandbox:
            raise DeployError(
                f"the system part writes under {install.system_root}: run it as root "
                "(sudo python3 -m deploytool install --part system)"
            )
    if part in ("user", "all"):
        if root:
            raise DeployError(
                f"the user part runs as {install.project.user}, never as root: "
                f"runuser -u {install.project.user} -- {install.python} -m deploytool install --part user"
            )
    changes: list[str] = []
    if part in ("system", "all"):
        changes += install_system(install)
    if part in ("user", "all"):
        changes += install_user(install)
    return changes


def _copy(source: Path, target: Path, mode: int, owner: str | None = None) -> bool:
    data = source.read_bytes()
    same = target.exists() and target.read_bytes() == data and (target.stat().st_mode & 0o777) == mode
    if same and (owner is None or target.owner() == owner):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.new")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    if owner is not None:
        shutil.chown(tmp, owner, owner)
    os.replace(tmp, target)
    return True


def _run(argv: list[object], what: str) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeployError(f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout
