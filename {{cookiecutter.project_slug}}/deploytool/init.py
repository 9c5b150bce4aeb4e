"""`deploytool init`: make this checkout an install of a given type (seed 000 layout)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from pathlib import Path

from . import ports
from .errors import DeployError
from .files import ensure_link
from .layout import ENV_CONF, PROJECT_JSON, Install
from .project import Project
from .render import SETTINGS_LOCAL, render, render_text

ADMIN_USER = "admin"


def init(root: Path, install_type: str, system_root: Path = Path("/"), app_bind: str | None = None) -> Install:
    """env.conf, settings_local.py (fresh secrets, 600), links, local folders, rendered configs.

    Idempotent: local data already there (settings_local.py, htpasswd) is kept as it is;
    without ``app_bind`` the address env.conf has is kept (127.0.0.1 in a new install).
    """
    env_conf = root / ENV_CONF
    current = Install.load(root) if env_conf.exists() else None
    if app_bind is None:
        app_bind = current.app_bind if current else "127.0.0.1"
    install = Install(Project.load(root / PROJECT_JSON), root, install_type, system_root, app_bind)
    check_local_address(app_bind)
    if current is not None:
        if current.install_type != install_type:
            raise DeployError(
                f"this checkout is already the {current.install_type!r} install ({env_conf}); "
                f"clone the repo again for a {install_type!r} install"
            )
    for link in install.links:  # fail before writing anything if a link cannot be made
        if link.exists() and not link.is_symlink():
            raise DeployError(f"{link} exists and is not a link: move it away, then run init again")

    if not install.settings_local.exists():
        settings = render_text(
            install,
            SETTINGS_LOCAL,
            secret_key=secrets.token_urlsafe(64),  # 86 characters, never 'django-insecure-'
            db_password=secrets.token_urlsafe(24),
        )
        _create_secret(install.settings_local, settings)
    if install.project.admin_basic_auth and not install.htpasswd.exists():
        password = secrets.token_urlsafe(18)
        _create_secret(install.root / "etc" / "admin_password", f"{ADMIN_USER}:{password}\n")
        _create_secret(install.htpasswd, f"{ADMIN_USER}:{hash_password(password)}\n")
    make_links(install)
    for folder in (install.media_root, install.data_dir):
        folder.mkdir(exist_ok=True)
    render(install)
    return install


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


def _create_secret(path: Path, text: str) -> None:
    """A new local file readable by its owner only (mode 600 from the first byte)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def hash_password(password: str) -> str:
    """SHA-512 crypt, which nginx's auth_basic reads through the system's crypt()."""
    result = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def summary(install: Install) -> str:
    return "\n".join(
        [
            f"{install.install_type} install of {install.project.domain} in {install.root}",
            f"site {install.site}, service {install.service}",
            ports.describe(install.project.port_block_start, install.install_type),
        ]
    )
