"""`deploytool backup` and `deploytool backups`: take, list and check this install's backups.

The database is dumped while the site serves, consistently: pg_dump reads one snapshot
(a single transaction), SQLite's online backup API copies a consistent state page by
page. pg_dump's custom format, not pg_basebackup: it restores into a fresh database of
any cluster of the same or a newer major version (a stage install, a new server), is a
tenth of the cluster's size for a typical site, and `pg_restore --list` checks it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import os
import re
import shlex
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import backups, migrations, proc
from .backups import Backup
from .dedicated import PostgreSQL
from .errors import DeployError
from .history import head
from .layout import Install
from .progress import say

SQLITE = "database.sqlite3"
DUMP = "database.dump"


def sqlite_file(install: Install) -> Path:
    return install.data_dir / "db.sqlite3"


@contextlib.contextmanager
def locked(install: Install) -> Iterator[None]:
    """One backup or restore of the install at a time."""
    install.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    with open(install.backup_dir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeployError(f"another backup or restore of {install.site} is running (lock {lock.name})") from None
        yield


@contextlib.contextmanager
def _private_files() -> Iterator[None]:
    """What a backup writes is the project user's alone (umask 077), whoever's shell runs it."""
    before = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(before)


def dump_database(install: Install, folder: Path) -> str:
    if install.project.database == "postgresql":
        server = PostgreSQL(install)
        db = server.db
        env = {**os.environ, "PGPASSWORD": db["PASSWORD"]}
        argv = [proc.postgresql_bin("pg_dump"), "-h", db["HOST"], "-p", db["PORT"], "-U", db["USER"]]
        proc.run([*argv, "--format=custom", "--file", folder / DUMP, db["NAME"]], "pg_dump", env=env)
        return "postgresql"
    source = sqlite_file(install)
    if not source.is_file():
        raise DeployError(f"{source} does not exist: nothing to back up (run migrate first)")
    with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as live:
        with contextlib.closing(sqlite3.connect(folder / SQLITE)) as copy:
            live.backup(copy)  # a consistent copy while the site writes
            # The copy is one self-contained file: a WAL-mode header would make every later
            # reader (verify, restore) create -wal and -shm files beside it.
            copy.execute("PRAGMA journal_mode=DELETE")
    (folder / SQLITE).chmod(0o600)
    return "sqlite"


def copy_media(install: Install, folder: Path, previous: Backup | None) -> None:
    """Uploads by rsync, hard-linking each file unchanged since the previous backup."""
    media = install.media_root
    (folder / "media").mkdir(mode=0o700)
    if not media.is_dir():
        return
    # -rlt: files, links, times; not owner, group or mode (the umask makes them private), so
    # an unchanged file (same size and time) is linked whatever nginx's group was.
    argv = [proc.program("rsync"), "-rlt"]
    if previous is not None and (previous.path / "media").is_dir():
        argv.append(f"--link-dest={previous.path / 'media'}")
    proc.run([*argv, f"{media}/", f"{folder / 'media'}/"], "rsync of media/")


def copy_secrets(install: Install, folder: Path) -> None:
    secrets = folder / "secrets"
    backups.private_dir(secrets)
    for source in (install.settings_local, install.htpasswd):
        if source.is_file():
            shutil.copyfile(source, secrets / source.name)
            (secrets / source.name).chmod(0o600)


def take(
    install: Install,
    label: str | None = None,
    with_secrets: bool = False,
    report: Callable[[str], None] | None = None,
    now: datetime.datetime | None = None,
    prune: bool = True,
) -> Backup:
    """A whole backup in backups/, or an error and nothing kept; then retention prunes."""
    tell = report or (lambda line: None)
    backups.holds_the_data(install)
    if label is not None:
        backups.valid_label(label)
    with locked(install), _private_files():
        for left in backups.remove_partials(install):
            tell(f"removed {left} (a backup that did not finish)")
        found = backups.all_backups(install)
        previous = found[0] if found else None
        revision = head(install)
        name = backups.folder_name(now or datetime.datetime.now(datetime.UTC), revision, label)
        if now is None and (install.backup_dir / name).exists():  # one of this second: the next one
            time.sleep(1.05 - datetime.datetime.now(datetime.UTC).microsecond / 1e6)
            name = backups.folder_name(datetime.datetime.now(datetime.UTC), revision, label)
        final = install.backup_dir / name
        if final.exists():
            raise DeployError(f"backup {name} exists already: give another --label")
        partial = install.backup_dir / (backups.PARTIAL + name)
        backups.private_dir(partial)
        try:
            applied = migrations.recorded(install)
            engine = dump_database(install, partial)
            tell(f"dumped the {engine} database")
            copy_media(install, partial, previous)
            tell("copied media/" + (f" (unchanged files linked to {previous.name})" if previous else ""))
            if with_secrets:
                copy_secrets(install, partial)
                tell("copied the secrets (settings_local.py, htpasswd; mode 600)")
            manifest: dict[str, Any] = {
                "format": backups.FORMAT,
                "site": install.site,
                "install_type": install.install_type,
                "revision": revision,
                "template_version": install.project.template_version,
                "taken": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "label": label,
                "database": engine,
                "migrations": applied,
                "secrets": with_secrets,
                "parts": backups.hash_parts(partial, previous),
            }
            backups.write_manifest(partial, manifest)
            partial.rename(final)
        except (DeployError, OSError, sqlite3.Error) as error:
            shutil.rmtree(partial, ignore_errors=True)
            lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
            said = " | ".join(dict.fromkeys(lines[:1] + lines[-3:]))  # one line: the error and its tail
            raise DeployError(f"backup failed, nothing was kept and nothing removed: {said}") from None
        backup = Backup(final)
        for removed in backups.prune(install, backup) if prune else []:
            tell(f"removed {removed} (retention)")
        return backup


REMOTE = re.compile(r"^(?P<login>[A-Za-z0-9_.-]+@)?(?P<host>[A-Za-z0-9_.:\[\]-]+):(?P<path>/[^\0\n]*)$")


def copy_to(backup: Backup, target: str, ssh_config: Path | None = None, previous: str | None = None) -> str:
    """rsync the backup to ``user@host:/path/<name>/`` over SSH, with the operator's keys and
    the rules of the fleet's deploy: the host key must already be known (StrictHostKeyChecking,
    no prompt), nothing asks for a password (BatchMode). Unchanged media is hard-linked to the
    previous backup's copy there, if it has one."""
    match = REMOTE.match(target)
    if match is None:
        raise DeployError(f"--copy-to {target!r}: expected [user@]host:/absolute/path")
    if ssh_config is not None and not ssh_config.is_file():
        raise DeployError(f"--ssh-config {ssh_config}: no such file")
    ssh = [proc.program("ssh"), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"]
    if ssh_config is not None:
        ssh += ["-F", str(ssh_config)]
    argv = [proc.program("rsync"), "-a", "--hard-links", "-e", shlex.join(ssh)]
    if previous:
        argv.append(f"--link-dest=../{previous}")  # missing there: rsync copies in full
    destination = target.rstrip("/") + f"/{backup.name}/"
    proc.run([*argv, "--mkpath", f"{backup.path}/", destination], f"rsync to {target}", timeout=6 * 3600)
    return destination


def verify(install: Install, backup: Backup) -> list[str]:
    """What is wrong with a backup: its files against the manifest, then whether its
    database dump restores (pg_restore --list reads the whole archive's table of contents;
    SQLite's integrity_check reads every page)."""
    wrong = backups.problems(backup)
    if wrong:
        return wrong
    manifest = backup.manifest()
    if manifest["database"] == "postgresql":
        listed = proc.attempt([proc.postgresql_bin("pg_restore"), "--list", backup.path / DUMP])
        if listed.returncode != 0:
            return [f"{DUMP} does not restore: {proc.tail(listed.stderr, 1)}"]
    else:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{backup.path / SQLITE}?mode=ro", uri=True)) as db:
                result = db.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.Error as error:
            return [f"{SQLITE} does not open: {error}"]
        if result != "ok":
            return [f"{SQLITE} fails integrity_check: {result}"]
    return []


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--label", help="a name kept in the backup's (letters, digits, _ . -); labelled backups are kept by retention"
    )
    parser.add_argument("--with-secrets", action="store_true", help="also settings_local.py and htpasswd (mode 600)")
    parser.add_argument("--verify", metavar="NAME", help="check backup NAME (hashes, the dump restores) instead")
    parser.add_argument(
        "--copy-to",
        metavar="[USER@]HOST:/PATH",
        help="then copy it off this machine with rsync over SSH (the host key must be known already)",
    )
    parser.add_argument("--ssh-config", type=Path, help="ssh_config for --copy-to (default: ~/.ssh/config)")


def run(args: argparse.Namespace) -> int:
    install = Install.load(args.root)
    if args.verify:
        backup = backups.find(install, args.verify)
        wrong = verify(install, backup)
        if wrong:
            raise DeployError(f"backup {backup.name} does not verify: {'; '.join(wrong)}")
        say("backup", f"{backup.name} verifies: every part matches its SHA-256 and the database restores")
        return 0
    say("backup", f"backing up {install.site} ({install.install_type}) into {install.backup_dir} ...")
    started = datetime.datetime.now(datetime.UTC)
    previous = next((b.name for b in backups.all_backups(install)), None)  # newest first
    backup = take(install, args.label, args.with_secrets, report=lambda line: say("backup", line))
    seconds = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
    say("backup", f"{backup.name}: {backups.human(backup.size())} in {seconds:.1f} s")
    if args.copy_to:
        try:
            where = copy_to(backup, args.copy_to, args.ssh_config, previous)
        except DeployError as error:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            raise DeployError(
                f"backup {backup.name} is kept here, but the copy failed: {' | '.join(lines[-3:])}"
            ) from None
        say("backup", f"copied to {where}")
    say("backup", f"next: to restore it, {install.deploytool} restore {backup.name}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    install = Install.load(args.root)
    found = backups.all_backups(install)
    if not found:
        print(f"no backups in {install.backup_dir} yet: {install.deploytool} backup")
        return 0
    for backup in found:
        wrong = verify(install, backup)
        state = "verifies" if not wrong else f"BROKEN: {wrong[0]}"
        print(f"{backup.name:<48} {backups.age(backup):>7} {backups.human(backup.size()):>9}  {state}")
    return 0
