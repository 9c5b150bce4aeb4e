"""`deploytool watch`: what the operators must hear before the site's users notice, mailed
to ADMINS once per problem, and once more when it is gone.

Checked: the certificate nginx serves (a warning 21 days before it expires, critical at 7:
Let's Encrypt sends no expiry mails any more, so a renewal that broke is told here), the
site's /health/ over HTTPS, the age of the newest whole backup, and the free space where
data/, logs/ and backups/ live. The state of the last run is data/watch.json: a problem
already told is not told again, unless it got worse (warning -> critical). The mails go out
through Django (the install's EMAIL_* settings and ADMINS, its backend: files on dev).
jobs.ini runs it every 15 minutes; exit status 1 while a problem lasts.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path

from . import proc
from .backups import all_backups
from .errors import DeployError
from .files import write_atomic
from .layout import Install
from .probe import served_certificate, site_get
from .progress import say

STATE = "watch.json"
CERT_WARNING, CERT_CRITICAL = 21, 7  # days before the served certificate expires
BACKUP_MAX_AGE = datetime.timedelta(hours=26)  # a daily backup, and two hours of slack
DISK_WARNING, DISK_CRITICAL = 10, 5  # percent free
LEVELS = ("warning", "critical")

# Run in the install's venv by manage.py shell: Django's own mail to ADMINS; exit 3 when
# ADMINS is empty (nobody to tell).
MAIL = """
import os, sys
from django.conf import settings
from django.core.mail import mail_admins
if not settings.ADMINS:
    sys.exit(3)
mail_admins(os.environ["WATCH_SUBJECT"], os.environ["WATCH_BODY"], fail_silently=False)
"""


@dataclass(frozen=True)
class Problem:
    key: str  # one per thing watched: certificate, health, backup, disk:<folder>
    level: str  # warning or critical
    detail: str  # what is wrong, and what to do


def certificate(install: Install, now: datetime.datetime) -> Problem | None:
    der = served_certificate(install, install.site)
    if der is None:
        return Problem(
            "certificate", "critical", f"nothing answers TLS for {install.site} on port {install.https_port}"
        )
    text = proc.run(["openssl", "x509", "-noout", "-enddate"], "openssl x509", input=ssl.DER_cert_to_PEM_cert(der))
    ends = datetime.datetime.strptime(" ".join(text.partition("=")[2].split()), "%b %d %H:%M:%S %Y %Z")
    left = ends.replace(tzinfo=datetime.UTC) - now
    days = left.total_seconds() / 86400
    if days > CERT_WARNING:
        return None
    level = "critical" if days <= CERT_CRITICAL else "warning"
    when = f"expired {-days:.1f} days ago" if days < 0 else f"expires in {days:.1f} days"
    return Problem(
        "certificate",
        level,
        f"the certificate served for {install.site} {when} ({ends:%Y-%m-%d %H:%M} UTC): certbot should have "
        f"renewed it 30 days before; as root: certbot renew --cert-name {install.site}, and see "
        "/var/log/letsencrypt/letsencrypt.log",
    )


def health(install: Install) -> Problem | None:
    try:
        status, _ = site_get(install, "/health/")
    except (OSError, http.client.HTTPException) as error:
        return Problem("health", "critical", f"{install.url}health/ does not answer: {error or type(error).__name__}")
    if status == 200:
        return None
    return Problem("health", "critical", f"{install.url}health/ answers {status}; see `bin/deploytool logs app`")


def backup(install: Install, now: datetime.datetime) -> Problem | None:
    whole = [item for item in all_backups(install) if (item.path / "manifest.json").is_file()]
    if not whole:
        return Problem("backup", "critical", f"no backup in {install.backup_dir}: run `bin/deploytool backup`")
    newest = whole[0]
    age = now - newest.taken
    if age <= BACKUP_MAX_AGE:
        return None
    return Problem(
        "backup",
        "critical",
        f"the newest backup, {newest.name}, is {age.total_seconds() / 3600:.0f} hours old: the daily backup "
        f"has not run or failed; see logs/backup.log, then run `bin/deploytool backup`",
    )


def disks(install: Install) -> list[Problem]:
    found = []
    for name, folder in (("data", install.data_dir), ("logs", install.log_dir), ("backups", install.backup_dir)):
        if not folder.exists():
            continue
        usage = shutil.disk_usage(folder)
        free = 100 * usage.free / usage.total
        if free < DISK_WARNING:
            level = "critical" if free < DISK_CRITICAL else "warning"
            detail = f"{free:.1f}% free ({usage.free >> 20} MiB) on the disk of {name}/ ({folder})"
            found.append(Problem(f"disk:{name}", level, detail))
    return found


def check(install: Install, now: datetime.datetime) -> list[Problem]:
    """What this host holds: the site (a front: its certificate and /health/), the data (its
    backups: not on the other hosts of a fleet with a data host), and always its disks."""
    serves_site = "front" in install.roles
    found = [
        certificate(install, now) if serves_site else None,
        health(install) if serves_site else None,
        backup(install, now) if install.runs_database else None,
    ]
    return [problem for problem in found if problem] + disks(install)


def read_state(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}  # a damaged state: every problem is told again, which is the safe side
    problems = data.get("problems", {}) if isinstance(data, dict) else {}
    return {key: value for key, value in problems.items() if isinstance(value, dict)}


def mail(install: Install, subject: str, body: str) -> bool:
    """Mail ADMINS through Django; False when ADMINS is empty."""
    env = {**os.environ, "WATCH_SUBJECT": subject, "WATCH_BODY": body}
    sent = proc.attempt([install.python, install.root / "manage.py", "shell", "-c", MAIL], cwd=install.root, env=env)
    if sent.returncode == 3:
        return False
    if sent.returncode != 0:
        raise DeployError(f"mailing ADMINS failed (exit {sent.returncode}): {proc.tail(sent.stderr, 3)}")
    return True


def watch(install: Install, now: datetime.datetime | None = None) -> list[Problem]:
    """Check, tell what is new or worse and what recovered, and record what was told."""
    now = now or datetime.datetime.now(datetime.UTC)
    path = install.data_dir / STATE
    told, problems = read_state(path), check(install, now)
    current = {problem.key: problem for problem in problems}
    for problem in problems:
        before = told.get(problem.key)
        if before and LEVELS.index(before.get("level", "warning")) >= LEVELS.index(problem.level):
            say("watch", f"{problem.level}: {problem.detail} (told at {before.get('since', '?')})")
            continue
        subject = f"{install.site}: {problem.level.upper()} {problem.key}"
        reached = mail(install, subject, problem.detail + "\n\nThis mail is sent once; another when it is fixed.")
        say("watch", f"{problem.level}: {problem.detail} ({'ADMINS mailed' if reached else 'ADMINS is empty'})")
        told[problem.key] = {"level": problem.level, "detail": problem.detail, "since": now.isoformat()}
        _write(path, told, now)  # each one recorded once sent: a failure later never resends it
    for key in sorted(set(told) - set(current)):
        reached = mail(install, f"{install.site}: RECOVERED {key}", f"Fixed: {told[key].get('detail', key)}")
        say("watch", f"recovered: {key} ({'ADMINS mailed' if reached else 'ADMINS is empty'})")
        del told[key]
        _write(path, told, now)
    _write(path, told, now)
    return problems


def _write(path: Path, told: dict[str, dict[str, str]], now: datetime.datetime) -> None:
    write_atomic(path, json.dumps({"checked": now.isoformat(), "problems": told}, indent=2) + "\n", 0o600)


def run(args: argparse.Namespace) -> int:
    install = Install.load(args.root)
    if os.geteuid() == 0:
        raise DeployError(
            f"watch mails through the project's Django: not as root. As {install.project.user}: "
            f"runuser -u {install.project.user} -- {install.deploytool} watch"
        )
    # Its mails may be files (dev's backend, in data/mail/): closed to other local accounts,
    # as everything the app writes, however it was started (cron, by hand, the timer).
    os.umask(0o027)
    problems = watch(install)
    if not problems:
        print(f"watch: {install.site}: certificate, /health/, backups and disk all fine")
        return 0
    print(f"watch: {len(problems)} problem(s); next: fix them, the next run mails when they are gone")
    return 1
