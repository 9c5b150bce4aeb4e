"""`deploytool restore NAME`: put a backup's database and media/ back into this install.

Everything that can refuse is checked before anything changes: the backup's hashes and
that its dump restores, that it is this install's (or --from-other-install), that the code
knows every migration it had applied. Then the current data is backed up first (label
pre-restore: the way back from a wrong restore), the app server stops, and:

- PostgreSQL: pg_restore into a fresh database, renamed into place only once it is whole
  (a failed restore leaves the old one serving, as it was);
- SQLite: SQLite's backup API writes the copy into the live file in one transaction (a
  failure rolls it back);
- media/: rsync --delete from the backup, in place (the folder keeps its owner, mode and
  nginx's group, which the project user could not give a new folder).

The app server starts again and /health/ must answer 200.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable

from . import backups, migrations, proc
from .backup import DUMP, SQLITE, locked, sqlite_file, take, verify
from .backups import Backup
from .dedicated import PostgreSQL
from .errors import DeployError
from .layout import Install
from .probe import app_get
from .progress import say

PARTS = ("db", "media")


def refusal(install: Install, backup: Backup, from_other: bool) -> str | None:
    """Why this backup must not be restored here, or None."""
    wrong = verify(install, backup)
    if wrong:
        return f"backup {backup.name} does not verify ({'; '.join(wrong)}): not restored"
    manifest = backup.manifest()
    mine = (install.site, install.install_type)
    theirs = (manifest.get("site"), manifest.get("install_type"))
    if theirs != mine and not from_other:
        return (
            f"backup {backup.name} is of {theirs[0]} ({theirs[1]} install), this is {mine[0]} ({mine[1]}): "
            "add --from-other-install to restore it here"
        )
    if manifest["database"] != install.project.database:
        engine = install.project.database
        return f"backup {backup.name} holds a {manifest['database']} database, this install uses {engine}"
    known = migrations.by_app(install, applied_only=False)
    newer = [
        f"{app}.{name}"
        for app, names in manifest.get("migrations", {}).items()
        for name in names
        if name not in known.get(app, [])
    ]
    if newer:
        return (
            f"backup {backup.name} has migrations this code does not know ({', '.join(newer[:5])}): deploy the "
            f"revision it was taken at ({(manifest.get('revision') or '?')[:12]}) first"
        )
    return None


def restore_postgresql(install: Install, backup: Backup) -> None:
    db = PostgreSQL(install).db
    env = {**os.environ, "PGPASSWORD": db["PASSWORD"]}
    where = ["-h", db["HOST"], "-p", db["PORT"], "-U", db["USER"]]
    name, fresh, old = db["NAME"], f"{db['NAME']}_restoring", f"{db['NAME']}_replaced"

    def sql(statement: str) -> None:
        proc.run(
            [proc.postgresql_bin("psql"), *where, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", statement],
            "psql",
            env=env,
        )

    sql(f'DROP DATABASE IF EXISTS "{fresh}"')
    proc.run([proc.postgresql_bin("createdb"), *where, fresh], "createdb", env=env)
    try:
        proc.run(
            [
                proc.postgresql_bin("pg_restore"),
                *where,
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "-d",
                fresh,
                backup.path / DUMP,
            ],
            "pg_restore",
            env=env,
        )
    except DeployError:
        sql(f'DROP DATABASE IF EXISTS "{fresh}"')
        raise
    # The swap: the old database goes only once the new one is whole (pre-restore backup kept).
    sql(f'DROP DATABASE IF EXISTS "{old}"')
    sql(f'ALTER DATABASE "{name}" RENAME TO "{old}"')
    sql(f'ALTER DATABASE "{fresh}" RENAME TO "{name}"')
    sql(f'DROP DATABASE "{old}"')


def restore_sqlite(install: Install, backup: Backup) -> None:
    target = sqlite_file(install)
    with contextlib.closing(sqlite3.connect(f"file:{backup.path / SQLITE}?mode=ro", uri=True)) as source:
        with contextlib.closing(sqlite3.connect(target)) as live:
            source.backup(live)
    target.chmod(0o600)


def restore_media(install: Install, backup: Backup) -> None:
    media = install.media_root
    media.mkdir(exist_ok=True)
    # -rlt: no owner, group or mode from the backup; new files take the folder's (setgid) group.
    argv = [proc.program("rsync"), "-rlt", "--delete", "--chmod=D2750,F640"]
    proc.run([*argv, f"{backup.path / 'media'}/", f"{media}/"], "rsync of media/")


def restore(
    install: Install,
    name: str,
    only: str | None = None,
    from_other: bool = False,
    report: Callable[[str], None] | None = None,
) -> Backup:
    """Restore backup ``name``; returns the pre-restore backup taken first."""
    tell = report or (lambda line: None)
    backups.holds_the_data(install)
    backup = backups.find(install, name)
    why = refusal(install, backup, from_other)
    if why:
        raise DeployError(f"{why}; nothing was changed")
    before = take(install, label="pre-restore", prune=False)  # never the one restored
    tell(f"backed up the current data first: {before.name}")
    with locked(install):
        stopped = proc.attempt([install.ctl, "status"]).returncode == 0
        if stopped:
            proc.run([install.ctl, "stop"], "bin/appctl.sh stop", timeout=120)
            tell("stopped the app server")
        try:
            if only in (None, "db"):
                (restore_postgresql if backup.manifest()["database"] == "postgresql" else restore_sqlite)(
                    install, backup
                )
                tell(f"restored the database of {backup.name}")
            if only in (None, "media"):
                restore_media(install, backup)
                tell(f"restored media/ of {backup.name}")
        finally:
            if stopped:
                proc.run([install.ctl, "start"], "bin/appctl.sh start", timeout=120)
                tell("started the app server")
    plan = migrations.manage(install, "migrate", "--plan").strip()
    tell(f"migrate --plan: {plan.splitlines()[-1] if plan else 'nothing'}")
    if stopped:
        healthy = proc.poll(lambda: _status(install) == 200, timeout=30, interval=0.3)
        if not healthy:
            raise DeployError(f"restored, but /health/ does not answer 200 ({_status(install)}); see logs/")
        tell("/health/ answers 200")
    return before


def _status(install: Install) -> int:
    try:
        return app_get(install, "/health/")[0]
    except OSError:
        return 0


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the backup's name (`deploytool backups`), or the path of a backup folder")
    parser.add_argument("--only", choices=PARTS, help="restore only the database or only media/")
    parser.add_argument(
        "--from-other-install",
        action="store_true",
        help="restore a backup of another install (pro into stage, another server's)",
    )


def run(args: argparse.Namespace) -> int:
    install = Install.load(args.root)
    started = time.monotonic()
    before = restore(install, args.name, args.only, args.from_other_install, report=lambda line: say("restore", line))
    say("restore", f"done in {time.monotonic() - started:.1f} s; the data it replaced is backup {before.name}")
    say("restore", f"next: check the site; to undo, {install.deploytool} restore {before.name}")
    return 0
