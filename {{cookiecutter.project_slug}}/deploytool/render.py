"""Render etc/templates/ for this install (stage two of rendering: per install, with Jinja2).

Which configs exist is decided by which templates the project has: the post-gen hook
pruned the ones its answers exclude.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any, NamedTuple

import jinja2

from . import firewall, proc
from .addresses import url_host
from .certificates import site_cert_dir
from .dedicated import for_templates
from .files import prune, write_atomic
from .jobs import Job
from .jobs import for_host as jobs_here
from .layout import NGINX_GROUP, Install

TEMPLATES = Path("etc/templates")


class Output(NamedTuple):
    target: str  # under etc/, named after the install (layout's names)
    what: str  # what the file is, for the first line of its header


# template (under etc/templates/) -> rendered file (under etc/) and what it is.
# etc/ mirrors the system's /etc, so `install` copies each file to the same path there.
OUTPUTS: dict[str, Output] = {
    "env.conf.j2": Output("env.conf", "the install's facts, for bin/appctl.sh and deploytool"),
    "nginx/site.conf.j2": Output(
        "nginx/sites-available/{final_site}", "nginx site (HTTPS, the app, static files, uploads)"
    ),
    "nginx/letsencrypt.conf.j2": Output(
        "nginx/sites-available/{bootstrap_site}", "nginx bootstrap site (the ACME challenge until a certificate exists)"
    ),
    "nginx/acme.conf.j2": Output("nginx/snippets/acme.conf", "nginx snippet for Let's Encrypt's HTTP-01 challenges"),
    "nginx/app.conf.j2": Output("nginx/snippets/{site}_app.conf", "nginx snippet passing a request to the app server"),
    "nginx/systemd-restart.conf.j2": Output(
        "systemd/system/nginx.service.d/{site}.conf", "drop-in restarting the system's nginx after a crash"
    ),
    "letsencrypt/cli.ini.j2": Output("letsencrypt/{site}.ini", "certbot's settings for this site's certificate"),
    "letsencrypt/deploy-hook.sh.j2": Output(
        "letsencrypt/renewal-hooks/deploy/{site}.sh", "certbot deploy hook (test and reload nginx after a renewal)"
    ),
    "uwsgi.yaml.j2": Output("uwsgi.yaml", "uWSGI, the app server"),
    "gunicorn.conf.py.j2": Output("gunicorn.conf.py", "gunicorn, the app server"),
    "systemd/app.service.j2": Output("systemd/system/{service}.service", "systemd unit of the app server"),
    "systemd/worker.service.j2": Output(
        "systemd/system/{worker_service}.service", "systemd unit of the background worker (Celery)"
    ),
    "systemd/polkit.rules.j2": Output(
        "polkit-1/rules.d/{service}.rules", "polkit rule: the project user starts and stops its own app unit"
    ),
    "systemd/postgresql.service.j2": Output(
        "systemd/system/{site}_postgresql.service", "systemd unit of the install's own PostgreSQL"
    ),
    "systemd/redis.service.j2": Output(
        "systemd/system/{site}_redis.service", "systemd unit of the install's own Redis"
    ),
    "systemd/memcached.service.j2": Output(
        "systemd/system/{site}_memcached.service", "systemd unit of the install's own memcached"
    ),
    "systemd/media.service.j2": Output(
        "systemd/system/{site}_media.service", "systemd unit of the media store (the data host's nginx for uploads)"
    ),
    "nginx/media.conf.j2": Output("nginx/{site}_media.conf", "nginx.conf of the media store on the data host"),
    "systemd/job.service.j2": Output("systemd/system/{site}_{job}.service", "systemd service of the job {job}"),
    "systemd/job.timer.j2": Output("systemd/system/{site}_{job}.timer", "systemd timer of the job {job}"),
    "supervisor/jobs.cron.j2": Output("cron.d/{jobs_cron}", "cron lines of the scheduled jobs"),
    "supervisor/supervisord.conf.j2": Output(
        "supervisor/supervisord.conf", "the install's own supervisord, run as the project user"
    ),
    "supervisor/app.conf.j2": Output(
        "supervisor/{service}.conf", "program of the app server (the install's supervisord)"
    ),
    "supervisor/worker.conf.j2": Output(
        "supervisor/{worker_service}.conf", "program of the background worker (the install's supervisord)"
    ),
    "supervisor/install.conf.j2": Output(
        "supervisor/conf.d/{site}_supervisord.conf", "supervisor program running the install's own supervisord"
    ),
    "supervisor/services.conf.j2": Output(
        "supervisor/conf.d/{site}_services.conf", "supervisor programs of the install's own database and cache"
    ),
    "logrotate.j2": Output("logrotate.d/{site}", "logrotate of every log of the install"),
    "nftables/install.nft.j2": Output("nftables/{site}.nft", "nftables rules: who may reach the install's ports"),
    "nftables/firewall.service.j2": Output(
        "systemd/system/{site}_firewall.service", "systemd unit loading the nftables rules at boot"
    ),
    "postgresql/pg_hba.conf.j2": Output(
        "postgresql/pg_hba.conf", "pg_hba.conf of the install's own PostgreSQL: who may connect"
    ),
    "tmpfiles.conf.j2": Output(
        "tmpfiles.d/{site}.conf", "tmpfiles.d of the run and socket folders, made at every boot"
    ),
}
EXECUTABLE = {"letsencrypt/deploy-hook.sh.j2"}
FIREWALL = "nftables/install.nft.j2"
FIREWALL_FILES = {FIREWALL, "nftables/firewall.service.j2"}
# The servers of the data host only, in a fleet that has one.
DATA_HOST_FILES = {"systemd/postgresql.service.j2", "postgresql/pg_hba.conf.j2", "systemd/redis.service.j2"}
# The media store: only on the data host of a fleet (a single server serves media/ itself).
MEDIA_STORE_FILES = {"systemd/media.service.j2", "nginx/media.conf.j2"}
# Rendered once per job of etc/templates/jobs.ini: outputs() keys them "<template>@<job>".
PER_JOB = {"systemd/job.service.j2", "systemd/job.timer.j2"}

# Only a sandbox runs its own nginx; a server keeps Debian's main configs.
SANDBOX_OUTPUTS: dict[str, Output] = {
    "sandbox/nginx.conf.j2": Output("nginx/nginx.conf", "nginx.conf of the sandbox's own nginx"),
}
# The list of what the last render wrote (local): what it no longer writes is removed.
RENDERED = "rendered.list"

# Rendered once by `init`, then local data: never rewritten by `render`.
SETTINGS_LOCAL = "settings_local.py.j2"


def header(install: Install, template: str, what: str, local: bool = False) -> str:
    """The two lines every rendered file opens with: what it is, and which template to edit."""
    supervisor = template.startswith("supervisor/") and template.endswith(".conf.j2")  # not its cron line
    mark = ";" if supervisor else "//" if template.endswith(".rules.j2") else "#"
    where = f"{install.site} ({install.install_type} install)"
    second = (
        f"Written once by `deploytool init` from etc/templates/{template}: local data, edit this file."
        if local
        else f"Rendered by `deploytool render` from etc/templates/{template}: edit the template, not this file."
    )
    return f"{mark} {where}: {what}.\n{mark} {second}\n"


def with_header(text: str, head: str) -> str:
    """``head`` first; after the #! line of a script."""
    if text.startswith("#!"):
        first, _, rest = text.partition("\n")
        return f"{first}\n{head}{rest}"
    return head + text


def environment(install: Install) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(install.templates),
        undefined=jinja2.StrictUndefined,  # a typo in a template fails, never renders empty
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shquote"] = _shquote
    env.filters["url_host"] = url_host
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
        "jobs": jobs_here(install),
        "firewall": firewall.rules(install) if firewall.applies(install) else None,
        "nft": proc.find("nft") or "/usr/sbin/nft",  # Debian's, where it is not installed yet
        # the dedicated servers' units: their host and port come from settings_local.py,
        # which init renders first (from a context without them)
        "dedicated": for_templates(install) if install.settings_local.exists() else {},
        **overrides,
    }


def render_text(install: Install, template: str, **overrides: Any) -> str:
    text = environment(install).get_template(template).render(context(install, **overrides))
    if template == SETTINGS_LOCAL:
        return with_header(text, header(install, template, "local settings", local=True))
    return with_header(text, header(install, template, {**OUTPUTS, **SANDBOX_OUTPUTS}[template].what))


def template_of(key: str) -> tuple[str, str]:
    """An outputs() key as (template, job): the job is "" for a template rendered once."""
    template, _, job = key.partition("@")
    return template, job


def outputs(install: Install) -> dict[str, Path]:
    """Templates this project has -> where their rendered copy goes; a template rendered
    per job appears once per job, as "<template>@<job>"."""
    names = {
        "site": install.site,
        "service": install.service,
        "final_site": install.final_site,
        "bootstrap_site": install.bootstrap_site,
        "jobs_cron": install.jobs_cron,
        "worker_service": install.worker_service,
    }
    jobs = [job.name for job in jobs_here(install)]
    found: dict[str, Path] = {}
    for template, output in all_outputs(install).items():
        if not (install.templates / template).is_file():
            continue
        if template in FIREWALL_FILES and not firewall.applies(install):
            continue  # an app server on TCP with no FLEET_HOST: its fronts are not known
        if template in DATA_HOST_FILES and not install.runs_database:
            continue  # an app host of a fleet with a data host: the database and Redis are that host's
        if template in MEDIA_STORE_FILES and not install.runs_media_store:
            continue
        for job in jobs if template in PER_JOB else [""]:
            key = f"{template}@{job}" if job else template
            found[key] = install.etc_dir / output.target.format(**names, job=job)
    return found


def all_outputs(install: Install) -> dict[str, Output]:
    return {**OUTPUTS, **(SANDBOX_OUTPUTS if install.sandbox else {})}


def render_all(install: Install) -> dict[Path, tuple[str, int]]:
    """Every config as text, in memory: rendered file -> (text, mode)."""
    install.check_socket_paths()
    env, values = environment(install), context(install)  # once: the context reads settings_local.py
    described = all_outputs(install)
    jobs: dict[str, Job] = {job.name: job for job in values["jobs"]}
    texts = {}
    for key, path in outputs(install).items():
        template, job = template_of(key)
        text = env.get_template(template).render({**values, "job": jobs.get(job)})
        what = described[template].what.format(job=job)
        texts[path] = (with_header(text, header(install, template, what)), 0o755 if template in EXECUTABLE else 0o644)
    return texts


def render(install: Install) -> list[Path]:
    """Render every config; all are rendered before any is written. Returns those changed.
    The list of what was written is relative to the checkout: a copy prunes only its own."""
    texts = render_all(install)
    changed = [path for path, (text, mode) in texts.items() if write_atomic(path, text, mode)]
    return changed + prune(install.etc_dir / RENDERED, install.etc_dir, set(texts))


def run(args: argparse.Namespace) -> int:
    changed = render(Install.load(args.root))
    print("\n".join(f"rendered {path.relative_to(args.root)}" for path in changed) or "nothing changed")
    return 0
