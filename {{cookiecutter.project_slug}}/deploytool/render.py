"""Render etc/templates/ for this install (stage two of rendering: per install, with Jinja2).

Which configs exist is decided by which templates the project has: the post-gen hook
pruned the ones its answers exclude.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import jinja2

from .certs import site_cert_dir
from .files import prune, write_atomic
from .layout import NGINX_GROUP, Install
from .services import for_templates

TEMPLATES = Path("etc/templates")

# template (under etc/templates/) -> rendered file (under etc/), named after the install.
# etc/ mirrors the system's /etc, so `install` copies each file to the same path there.
OUTPUTS: dict[str, str] = {
    "env.conf.j2": "env.conf",
    "nginx/site.conf.j2": "nginx/sites-available/{site}.nginx.conf",
    "nginx/letsencrypt.conf.j2": "nginx/sites-available/{site}_letsencrypt.nginx.conf",
    "nginx/acme.conf.j2": "nginx/snippets/acme.conf",
    "letsencrypt/cli.ini.j2": "letsencrypt/cli.ini",
    "letsencrypt/deploy-hook.sh.j2": "letsencrypt/renewal-hooks/deploy/{site}.sh",
    "uwsgi.yaml.j2": "uwsgi.yaml",
    "gunicorn.conf.py.j2": "gunicorn.conf.py",
    "systemd/app.service.j2": "systemd/system/{service}.service",
    "systemd/postgresql.service.j2": "systemd/system/{site}_postgresql.service",
    "systemd/redis.service.j2": "systemd/system/{site}_redis.service",
    "systemd/memcached.service.j2": "systemd/system/{site}_memcached.service",
    "supervisor/app.conf.j2": "supervisor/conf.d/{service}.conf",
    "supervisor/services.conf.j2": "supervisor/conf.d/{site}_services.conf",
    "logrotate.j2": "logrotate.d/{site}",
    "tmpfiles.conf.j2": "tmpfiles.d/{site}.conf",
}
EXECUTABLE = {"letsencrypt/deploy-hook.sh.j2"}

# Only a sandbox runs its own nginx and supervisord; a server keeps Debian's main configs.
SANDBOX_OUTPUTS: dict[str, str] = {
    "sandbox/nginx.conf.j2": "nginx/nginx.conf",
    "supervisor/supervisord.conf.j2": "supervisor/supervisord.conf",
}
# The list of what the last render wrote (local): what it no longer writes is removed.
RENDERED = "rendered.list"

# Rendered once by `init`, then local data: never rewritten by `render`.
SETTINGS_LOCAL = "settings_local.py.j2"


def environment(install: Install) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(install.templates),
        undefined=jinja2.StrictUndefined,  # a typo in a template fails, never renders empty
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shquote"] = _shquote
    return env


def _shquote(value: object) -> str:
    return shlex.quote(str(value))


def context(install: Install, **overrides: Any) -> dict[str, Any]:
    """What templates see: the answers, the install, its ports; overrides replace paths (check)."""
    return {
        "project": install.project,
        "install": install,
        "ports": install.ports,
        # paths `check` swaps for throwaway ones: templates use these names, not install.*
        "cert_dir": site_cert_dir(install),
        "log_dir": install.log_dir,
        "nginx_dir": install.nginx_dir,
        "nginx_group": NGINX_GROUP,
        # the dedicated servers' units: their host and port come from settings_local.py,
        # which init renders first (from a context without them)
        "dedicated": for_templates(install) if install.settings_local.exists() else {},
        **overrides,
    }


def render_text(install: Install, template: str, **overrides: Any) -> str:
    return environment(install).get_template(template).render(context(install, **overrides))


def outputs(install: Install) -> dict[str, Path]:
    """Templates this project has -> where their rendered copy goes."""
    names = {"site": install.site, "service": install.service}
    targets = {**OUTPUTS, **(SANDBOX_OUTPUTS if install.sandbox else {})}
    return {
        template: install.etc_dir / target.format(**names)
        for template, target in targets.items()
        if (install.templates / template).is_file()
    }


def render_all(install: Install) -> dict[Path, tuple[str, int]]:
    """Every config as text, in memory: rendered file -> (text, mode)."""
    install.check_socket_paths()
    env, values = environment(install), context(install)  # once: the context reads settings_local.py
    return {
        path: (env.get_template(template).render(values), 0o755 if template in EXECUTABLE else 0o644)
        for template, path in outputs(install).items()
    }


def render(install: Install) -> list[Path]:
    """Render every config; all are rendered before any is written. Returns those changed.
    The list of what was written is relative to the checkout: a copy prunes only its own."""
    texts = render_all(install)
    changed = [path for path, (text, mode) in texts.items() if write_atomic(path, text, mode)]
    return changed + prune(install.etc_dir / RENDERED, install.etc_dir, set(texts))
