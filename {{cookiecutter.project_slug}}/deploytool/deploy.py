"""`deploytool deploy [REV]`: put a revision of the repo live in this install, or keep the
live one serving (a fabfile's steps, with a health check and a rollback).

Run as the project user from the install (a git checkout), while the app server runs:

  preflight      a git checkout, no uncommitted change to a tracked file, the app server up
  fetch          git fetch; REV (default: the head of the branch this one tracks) -> a commit
  checkout       git reset --keep to it (git-ignored local data is never touched)
  requirements   pip install -r requirements.txt, only when it changed since the live revision
  render         etc/ configs from the revision's templates
  check          manage.py check (--deploy --fail-level WARNING on stage and pro)
  migrate        manage.py migrate
  collectstatic  manage.py collectstatic (hashed names: the old code's files stay in place)
  reload         bin/appctl.sh reload: graceful, no request lost; refuses code that does not import
  workers        bin/workerctl.sh restart (worker=celery): warm shutdown, running tasks finish
  health         GET https://<site>/health/ through nginx, until it answers 200 for the revision

If a step after the checkout fails, the code goes back to the previous revision (git), with
its requirements, configs and static files, and the app server is reloaded gracefully; the
old revision serves throughout. Migrations that the deploy applied before a later step
failed stay applied: the old code has been running next to them since the migrate step (a
deploy migrates before it reloads), so they have to be backward compatible anyway, and
undoing one automatically could drop data written since. The error names them and the
command that undoes them. A migration that fails is rolled back by the database itself
(each migration is one transaction on PostgreSQL and SQLite).

The live revision and the last attempt are recorded in data/deploy.json (local data:
git-ignored, skipped by cruft); `deploytool status` shows them.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import http.client
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import fleet, proc, requirements
from .backup import take
from .dedicated import fleet_readers
from .errors import DeployError
from .history import add_attempt, read_record
from .history import head as _head
from .history import short as _short
from .install import root_command, system_files
from .layout import Install
from .migrations import applied_migrations, manage, planned
from .probe import app_get, site_get
from .render import render

LOCK = Path("data/deploy.lock")
HEALTH_PATH = "/health/"
STEPS = ("checkout", "requirements", "render", "check", "migrate", "collectstatic", "reload", "workers", "health")
REVISION = re.compile(r"[0-9a-f]{7,40}")

# Exit statuses of `deploy`: live; failed and rolled back (the previous revision serves);
# failed before anything changed (a DeployError in the preflight is 2 as well); the
# rollback failed too.
LIVE, ROLLED_BACK, NOTHING_CHANGED, ROLLBACK_FAILED = 0, 1, 2, 3


class StepFailed(Exception):
    """A step of the deploy failed: which one, and why (the tool's own words)."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


@dataclass
class Deploy:
    """One deploy of ``target`` over ``previous``: what it has done so far, for the rollback."""

    install: Install
    previous: str
    health_timeout: float
    target: str = ""
    started: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    requirements_installed: bool = False
    migrations_applied: list[str] = field(default_factory=list)
    backup: str | None = None  # the backup taken before migrating, if there was anything to apply
    notes: list[str] = field(default_factory=list)
    skip_migrate: bool = False  # a later host of a roll-out over one shared database

    # ---- the steps -----------------------------------------------------------------------
    def fetch(self, revision: str | None) -> str:
        remotes = _git(self.install, "remote").split()
        if remotes:
            _git(self.install, "fetch", "--all", "--tags", "--quiet", timeout=300)
        if revision is None:
            revision = _upstream(self.install, bool(remotes))
        found = proc.attempt(
            ["git", "-C", self.install.root, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"]
        )
        if found.returncode != 0:
            where = "after git fetch" if remotes else "(this checkout has no remote)"
            raise DeployError(
                f"revision {revision!r} is not a commit of this repo {where}: name a commit, tag or branch"
            )
        self.target = found.stdout.strip()
        return f"{revision} = {_short(self.target)} {_subject(self.install, self.target)}"

    def checkout(self) -> str:
        _git(self.install, "reset", "--keep", "--quiet", self.target)
        self.reread()
        return f"{_short(self.previous)} -> {_short(self.target)}"

    def reread(self) -> None:
        """The install as the checked-out code has it: its answers (etc/project.json) and its
        fleet (etc/fleet.ini) are tracked files, which the checkout has just changed."""
        self.install = Install.load(self.install.root)

    def requirements(self) -> str:
        if requirements.digest(self.install) == self.installed_requirements():
            return "unchanged"
        if requirements.met(self.install):  # the venv has every pin already (say, lines reordered)
            return "changed, and already in the venv"
        requirements.pip_install(self.install, "requirements")
        self.requirements_installed = True
        return "installed"

    def installed_requirements(self) -> str | None:
        """Hash of the requirements the venv has: the live revision's (recorded, or in git)."""
        live = read_record(self.install).get("live") or {}
        if live.get("requirements_sha256"):
            return str(live["requirements_sha256"])
        shown = proc.attempt(["git", "-C", self.install.root, "show", f"{self.previous}:requirements.txt"])
        return hashlib.sha256(shown.stdout.encode()).hexdigest() if shown.returncode == 0 else None

    def render(self) -> str:
        changed = render_and_reload(self.install)
        outside = sorted(
            str(path.relative_to(self.install.root)) for path in set(changed) & set(system_files(self.install))
        )
        if outside:
            apply = (
                f"{self.install.deploytool} up"
                if self.install.sandbox
                else f"as root, from root's own copy of the code: {root_command(self.install)}"
            )
            self.notes.append(
                f"configs installed outside the checkout changed ({', '.join(outside)}): put them in place "
                f"with `{apply}` (nginx reloads its config then)"
            )
        return f"{len(changed)} changed" if changed else "unchanged"

    def check(self) -> str:
        args = ["check", "--deploy", "--fail-level", "WARNING"] if self.install.is_production else ["check"]
        manage(self.install, *args)
        return " ".join(args)

    def migrate(self) -> str:
        if not self.install.migrates:
            return "not here: a front, the data host's database is the app hosts' to migrate"
        if self.skip_migrate:
            return "not here: the roll-out's first host migrated the site's database"
        if not planned(self.install):  # most deploys: one manage.py run, nothing more
            return "nothing to apply"
        before = applied_migrations(self.install)
        if not self.install.runs_database:
            # the data is the data host's: its backup is the way back (roll out to it first)
            print(f"deploy: {'backup':<13} not here: the data host holds the data, back it up there")
        else:  # the way back from a migration that drops data
            started = time.monotonic()
            self.backup = take(self.install, label="pre-migrate").name
            print(f"deploy: {'backup':<13} {self.backup} before migrating ({time.monotonic() - started:.1f} s)")
        try:
            manage(self.install, "migrate", "--noinput")
        finally:
            after = applied_migrations(self.install, missing_ok=True)
            self.migrations_applied = [name for name in after if name not in before]
        return ", ".join(self.migrations_applied) or "nothing to apply"

    def collectstatic(self) -> str:
        out = manage(self.install, "collectstatic", "--noinput")
        summary = out.strip().splitlines()[-1] if out.strip() else "done"
        return re.sub(r" to '[^']*'", "", summary)  # "N static files copied, M unmodified, ..."

    def reload(self) -> str:
        if not self.install.serves_app:
            return f"not here: no app server on this host (roles: {', '.join(self.install.roles)})"
        return app_server(self.install, "reload")

    def workers(self) -> str:
        return restart_workers(self.install)

    def health(self) -> str:
        return self.health_of(self.target)

    def health_of(self, revision: str, site: bool = True) -> str:
        """A host with the app: its app server names ``revision``. A front without it: the site
        through its nginx, whichever app host answers. A data host alone serves no page."""
        if self.install.serves_app:
            return health(self.install, revision, self.health_timeout, site=site)
        if "front" in self.install.roles:
            return site_health(self.install, min(self.health_timeout, 10))
        return "not here: the data host serves no page"

    # ---- running them --------------------------------------------------------------------
    def step(self, name: str, action: Callable[[], str]) -> None:
        started = time.monotonic()
        self.started.append(name)
        try:
            detail = action()
        except DeployError as error:
            raise StepFailed(name, str(error)) from None
        except Exception as error:  # a template that does not render, a disk full: still roll back
            raise StepFailed(name, f"{type(error).__name__}: {error}") from error
        self.done.append(name)
        print(f"deploy: {name:<13} {detail} ({time.monotonic() - started:.1f} s)", flush=True)

    def changed_anything(self) -> bool:
        """Whether the checkout moved (a failed or interrupted checkout may not have)."""
        return "checkout" in self.done or ("checkout" in self.started and _head(self.install) != self.previous)

    def roll_back(self) -> list[str]:
        """Put the previous revision back; returns what could not be undone."""
        if not self.changed_anything():
            return []
        problems: list[str] = []
        try:
            _git(self.install, "reset", "--keep", "--quiet", self.previous)
        except DeployError as error:
            return [f"code: {error}; the checkout is at {_short(_head(self.install) or '?')}"]
        self.reread()
        undo: list[tuple[str, bool, Callable[[], object]]] = [
            (
                "requirements",
                self.requirements_installed,
                lambda: requirements.pip_install(self.install, "rollback requirements"),
            ),
            ("render", True, lambda: render_and_reload(self.install)),
            (
                "collectstatic",
                "collectstatic" in self.started,  # the manifest of hashed names is rewritten
                lambda: manage(self.install, "collectstatic", "--noinput"),
            ),
            # Always: an app server may have started workers from the new code meanwhile
            # (lazy-apps and gunicorn workers import the code on disk when they respawn).
            ("reload", self.install.serves_app, lambda: app_server(self.install, "reload")),
            ("workers", "workers" in self.started, lambda: restart_workers(self.install)),
            # The previous revision serving on the app server is what the rollback restores;
            # the HTTPS check of the site does not depend on the revision.
            ("health", True, lambda: self.health_of(self.previous, site=False)),
        ]
        for name, needed, action in undo:
            if not needed:
                continue
            started = time.monotonic()
            try:
                action()
            except Exception as error:  # go on with the rest: the reload matters most
                problems.append(f"{name}: {error}")
                if name == "reload":
                    break
            else:
                print(f"deploy: rollback {name:<13} done ({time.monotonic() - started:.1f} s)", flush=True)
        return problems


def deploy(
    install: Install, revision: str | None = None, health_timeout: float = 30.0, skip_migrate: bool = False
) -> int:
    """Deploy ``revision``; returns the exit status (0 live, 1 rolled back, 2 nothing changed,
    3 rollback failed)."""
    if os.geteuid() == 0:
        raise DeployError(
            f"deploy runs as the project user {install.project.user!r}, never as root (files in .git, "
            f"static/ and the venv would become root's): runuser -u {install.project.user} -- "
            f"{install.deploytool} deploy"
        )
    started = time.monotonic()
    with _lock(install):
        run = Deploy(install, preflight(install), health_timeout, skip_migrate=skip_migrate)
        try:
            run.step("fetch", lambda: run.fetch(revision))
            workers = install.has_worker and install.serves_app
            for name in STEPS if workers else [step for step in STEPS if step != "workers"]:
                run.step(name, getattr(run, name))
        except StepFailed as failure:
            return _failed(run, failure, time.monotonic() - started)
        except KeyboardInterrupt:  # Ctrl-C: roll back all the same, nothing stays half done
            failure = StepFailed(run.started[-1] if run.started else "fetch", "interrupted (Ctrl-C)")
            return _failed(run, failure, time.monotonic() - started)
        seconds = time.monotonic() - started
        _record(install, run, "live", seconds)
        for note in run.notes:
            print(f"deploy: note: {note}")
        print(
            f"deploy: {_short(run.target)} is live in the {install.install_type} install "
            f"({seconds:.1f} s; was {_short(run.previous)})"
        )
        return LIVE


def _failed(run: Deploy, failure: StepFailed, seconds: float) -> int:
    install = run.install
    if "\n" in failure.reason.strip():  # the tool's own output; the summary at the end has its last line
        print(f"deploy: step {failure.step} failed:\n{failure.reason}", file=sys.stderr, flush=True)
    changed = run.changed_anything()
    if changed:
        print(f"deploy: {failure.step} failed: rolling back to {_short(run.previous)}", flush=True)
    problems = run.roll_back()
    what = f"step {failure.step!r} failed" + (f" for {_short(run.target)}" if run.target else "")
    migrations = ""
    if run.migrations_applied:
        migrations = (
            f" Migrations this deploy applied stay applied: {', '.join(run.migrations_applied)} (the previous code "
            f"ran next to them during the deploy); to undo them, check out {_short(run.target)} and run "
            f"`manage.py migrate <app> <previous migration>` before deploying {_short(run.previous)} again."
        )
        if run.backup:
            migrations += f" The data as it was before them: {install.deploytool} restore {run.backup}"
    if problems:
        _record(install, run, "rollback failed", seconds, failure, problems)
        print(
            f"deploytool deploy: {what} ({_last_line(failure.reason)}), and the rollback to {_short(run.previous)} "
            f"failed too: {'; '.join(problems)}. Fix that by hand now (bin/appctl.sh status, logs/).{migrations}",
            file=sys.stderr,
        )
        return ROLLBACK_FAILED
    _record(install, run, "rolled back" if changed else "failed", seconds, failure)
    outcome = "Rolled back" if changed else "Nothing was changed"
    print(
        f"deploytool deploy: {what}: {_last_line(failure.reason)}. "
        f"{outcome}: {_short(run.previous)} serves, as before.{migrations}",
        file=sys.stderr,
    )
    return ROLLED_BACK if changed else NOTHING_CHANGED


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else "no output"


# ---- preflight -------------------------------------------------------------------------------
def preflight(install: Install) -> str:
    """The revision checked out now, once the install is known to be deployable."""
    top = proc.attempt(["git", "-C", install.root, "rev-parse", "--show-toplevel"])
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != install.root.resolve():
        raise DeployError(
            f"{install.root} is not a git checkout ({(top.stderr or top.stdout).strip()}): deploy works on a "
            "clone of the project repo (git clone URL /home/<user>/<domain>/<type>)"
        )
    changed = _git(install, "status", "--porcelain", "--untracked-files=no").splitlines()
    if changed:
        files = ", ".join(line[3:] for line in changed[:5]) + (" ..." if len(changed) > 5 else "")
        raise DeployError(
            f"tracked files have uncommitted changes ({files}): commit them (or `git stash`), then deploy; "
            "a deploy never overwrites them. Nothing was changed"
        )
    status = proc.attempt([install.ctl, "status"]) if install.serves_app else None
    if status is not None and status.returncode != 0:
        start = f"{install.deploytool} up" if install.sandbox else install.by_hand("start")
        raise DeployError(
            f"the app server is not running ({(status.stdout + status.stderr).strip()}): start it first "
            f"({start}); a deploy reloads a running app server. Nothing was changed"
        )
    head = _head(install)
    if head is None:
        raise DeployError(f"{install.root} has no commit checked out: commit or clone first")
    return head


@contextmanager
def _lock(install: Install) -> Iterator[None]:
    path = install.root / LOCK
    path.parent.mkdir(exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeployError(f"another deploy of this install is running (it holds {path}): let it finish") from None
        yield


# ---- the programs deploy runs ------------------------------------------------------------------
def _git(install: Install, *args: str, timeout: float = 60) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # a fetch never waits for a password
    return proc.run(["git", "-C", install.root, *args], f"git {' '.join(args)}", env=env, timeout=timeout)


def _upstream(install: Install, has_remote: bool) -> str:
    found = proc.attempt(
        ["git", "-C", install.root, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}"]
    )
    if found.returncode != 0 or not found.stdout.strip():
        why = "the branch checked out tracks no remote branch" if has_remote else "this checkout has no remote"
        raise DeployError(
            f"{why}: name the revision to deploy: {install.deploytool} deploy REV (a commit, tag or branch)"
        )
    return found.stdout.strip()


def _subject(install: Install, revision: str) -> str:
    found = proc.attempt(["git", "-C", install.root, "log", "-1", "--format=%s", revision])
    return f"({found.stdout.strip()})" if found.returncode == 0 else ""


def restart_workers(install: Install) -> str:
    """The worker with the code now checked out: a warm shutdown, so the running tasks
    finish first (Celery's own limit for that: the units' 300 s)."""
    out = proc.run([install.workerctl, "restart"], "bin/workerctl.sh restart", timeout=360)
    return out.strip().splitlines()[-1] if out.strip() else "done"


def render_and_reload(install: Install) -> list[Path]:
    """Render; a pg_hba.conf or media store config that changed (a host added to or removed
    from etc/fleet.ini) is re-read by its running server at once, or the new host stays refused."""
    changed = render(install)
    for server in fleet_readers(install):
        if server.fleet_file in changed and server.reload():
            print(f"deploy: {'':<13} {server.name} re-read {server.fleet_file.relative_to(install.root)}", flush=True)
    return changed


def app_server(install: Install, command: str) -> str:
    out = proc.run([install.ctl, command], f"bin/appctl.sh {command}", timeout=300)
    return out.strip().splitlines()[-1] if out.strip() else "done"


def health(install: Install, revision: str, timeout: float, site: bool = True) -> str:
    """Two checks, each of one thing. The app server of this host (on its socket, past nginx
    and any balancer, which might answer from another host) until /health/ names
    ``revision`` ("ok <rev>"); then the site through this host's nginx over HTTPS, with the
    trust its certificate was issued under (a private or staging CA as much as a public one)."""
    last, answer = "no answer", ""

    def app_answers() -> bool:
        nonlocal last, answer
        try:
            status, body = app_get(install, HEALTH_PATH)
        except (OSError, http.client.HTTPException) as error:
            last = f"{type(error).__name__}: {error}"
            return False
        text = body.decode(errors="replace").strip()
        served = served_revision(text)
        if status == 200 and (served is None or revision.startswith(served)):
            answer = text
            return True
        last = f"HTTP {status} ({_gist(text)})" if status != 200 else f"it runs {served}, not {_short(revision)}"
        return False

    where = f"the app server ({install.app_address})"
    if not proc.poll(app_answers, timeout, interval=0.5):
        raise DeployError(
            f"{where}: {HEALTH_PATH} did not answer 200 for {_short(revision)} within {timeout:.0f} s; last: {last}"
        )
    if not site:
        return f"{where} answers {answer[:60]!r}"
    if not install.site_enabled(install.final_site).exists():
        return f"{where} answers {answer[:60]!r} (no HTTPS site on this host's nginx yet: `deploytool cert`)"
    return f"{where} answers {answer[:60]!r}; {site_health(install, min(timeout, 10))}"


def site_health(install: Install, timeout: float) -> str:
    """The site's /health/ through this host's nginx over HTTPS answers 200."""
    url = install.url.rstrip("/") + HEALTH_PATH
    last = "no answer"

    def site_answers() -> bool:
        nonlocal last
        try:
            status, body = site_get(install, HEALTH_PATH)
        except (OSError, http.client.HTTPException) as error:
            last = f"{type(error).__name__}: {error}"
            return False
        last = f"HTTP {status} ({_gist(body.decode(errors='replace'))})"
        return status == 200

    if not proc.poll(site_answers, timeout, interval=0.5):
        raise DeployError(f"{url} did not answer 200 over HTTPS through nginx; last: {last}")
    return f"{url} answers 200 over HTTPS"


def _gist(text: str) -> str:
    """An error page in a few words: its HTML title, or its first line."""
    title = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
    words = " ".join((title.group(1) if title else text.split("\n", 1)[0]).split())
    return words[:120] or "empty body"


def served_revision(text: str) -> str | None:
    """The revision a health answer names ("ok 1a2b3c4d5e6f"), if it names one."""
    words = text.split()
    return words[1] if len(words) >= 2 and words[0] == "ok" and REVISION.fullmatch(words[1]) else None


# ---- the record ------------------------------------------------------------------------------
def _record(
    install: Install,
    run: Deploy,
    result: str,
    seconds: float,
    failure: StepFailed | None = None,
    problems: list[str] | None = None,
) -> None:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    attempt: dict[str, Any] = {
        "revision": run.target or None,
        "previous": run.previous,
        "at": now,
        "result": result,
        "seconds": round(seconds, 1),
    }
    if failure is not None:
        attempt["step"] = failure.step
        attempt["error"] = _last_line(failure.reason)
        attempt["migrations_left_applied"] = run.migrations_applied
    if problems:
        attempt["rollback_problems"] = problems
    if run.backup:
        attempt["backup"] = run.backup
    live = None
    if result == "live":
        live = {
            "revision": run.target,
            "since": now,
            "previous": run.previous,
            "requirements_sha256": requirements.digest(install),
        }
    add_attempt(install, attempt, live)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("revision", nargs="?", help="commit, tag or branch (default: the tracked remote branch)")
    parser.add_argument(
        "--health-timeout", type=float, default=30.0, help="seconds /health/ has to answer (default 30)"
    )
    parser.add_argument(
        "--skip-migrate",
        action="store_true",
        help="no migrate step: a roll-out's first host migrated the database this host shares (--hosts does it)",
    )
    fleet.arguments(parser)


def run(args: argparse.Namespace) -> int:
    install = Install.load(args.root)
    if args.hosts:
        return fleet.run(install, args)
    return deploy(install, args.revision, args.health_timeout, args.skip_migrate)
