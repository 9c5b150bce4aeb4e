"""The install's backups: one folder each under backups/, its manifest, its check, retention.

A backup is a folder named ``<UTC time>-<revision>[-<label>]`` (mode 0700) with:

    manifest.json      what is inside: site, install type, revision, template version, the
                       applied migrations, and the size and SHA-256 of every other file
    database.dump      PostgreSQL: pg_dump's custom format (pg_restore reads it)
    database.sqlite3   SQLite: a copy made by SQLite's online backup API
    media/             the uploads; files unchanged since the previous backup are hard links
    secrets/           only with --with-secrets: settings_local.py, htpasswd (0600)

A backup is written as ``.partial-<name>`` and renamed once its manifest is complete: a
folder without the dot is whole.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DeployError
from .layout import Install

MANIFEST = "manifest.json"
FORMAT = 1
PARTIAL = ".partial-"
STAMP = "%Y%m%dT%H%M%SZ"
NAME = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-(?P<revision>[0-9a-f]{1,40}|norev)(-(?P<label>[A-Za-z0-9_.-]{1,40}))?$")
LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")

# Retention: the newest backup of each of the last N days, M ISO weeks, K months is kept.
KEEP_DAILY, KEEP_WEEKLY, KEEP_MONTHLY = 7, 4, 6


@dataclass(frozen=True)
class Backup:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def taken(self) -> datetime.datetime:
        match = NAME.match(self.name)
        assert match is not None
        return datetime.datetime.strptime(match["stamp"], STAMP).replace(tzinfo=datetime.UTC)

    def manifest(self) -> dict[str, Any]:
        try:
            data = json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError) as error:
            raise DeployError(f"backup {self.name}: its {MANIFEST} is unreadable ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("parts"), dict):
            raise DeployError(f"backup {self.name}: {MANIFEST} is not a format-{FORMAT} manifest")
        return data

    def size(self) -> int:
        """Bytes of every file (files hard-linked to an older backup's count here too)."""
        return sum(file.stat().st_size for file in self.path.rglob("*") if file.is_file() and not file.is_symlink())


def holds_the_data(install: Install) -> None:
    """Backups are taken and restored where the site's data is: in a fleet with a data host,
    on that host (its database and the uploads in its media store); on any other host the
    media/ folder holds no upload, so a backup there would miss them all. Refused by name."""
    data_host = install.data_host
    if data_host is not None and not install.runs_database:
        raise DeployError(
            f"this host ({install.fleet_host}) holds none of the site's data: the database and the uploads are on "
            f"the data host {data_host.name}; back up and restore there (its scheduled backup runs there: "
            "jobs.ini's on = data); nothing was done"
        )


def valid_label(label: str) -> str:
    if not LABEL.match(label):
        raise DeployError(f"label {label!r}: letters, digits, _ . - only, at most 40")
    return label


def folder_name(when: datetime.datetime, revision: str | None, label: str | None) -> str:
    name = f"{when.astimezone(datetime.UTC).strftime(STAMP)}-{(revision or 'norev')[:12]}"
    return f"{name}-{label}" if label else name


def all_backups(install: Install) -> list[Backup]:
    """Whole backups, newest first (a partial one, being written or left by a failure, is not)."""
    folder = install.backup_dir
    if not folder.is_dir():
        return []
    found = [Backup(path) for path in folder.iterdir() if path.is_dir() and NAME.match(path.name)]
    return sorted(found, key=lambda backup: backup.name, reverse=True)


def find(install: Install, name: str) -> Backup:
    """A backup by name, or by a path to a backup folder (a copy from another server)."""
    path = Path(name)
    if "/" not in name:
        path = install.backup_dir / name
    if not (path / MANIFEST).is_file() or not NAME.match(path.name):
        known = ", ".join(backup.name for backup in all_backups(install)[:3]) or "none yet"
        raise DeployError(f"no backup {name!r} (newest: {known}; `deploytool backups` lists them)")
    return Backup(path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def hash_parts(folder: Path, previous: Backup | None = None) -> dict[str, dict[str, Any]]:
    """Every file but the manifest -> size and SHA-256. A file hard-linked to the previous
    backup's (the same inode: unchanged media) keeps that backup's hash, read once."""
    known: dict[tuple[int, int], str] = {}
    if previous is not None:
        for relative, part in previous.manifest()["parts"].items():
            try:
                info = (previous.path / relative).stat()
            except OSError:
                continue
            known[(info.st_dev, info.st_ino)] = part["sha256"]
    parts = {}
    for file in sorted(folder.rglob("*")):
        if not file.is_file() or file.is_symlink() or file.name == MANIFEST and file.parent == folder:
            continue
        info = file.stat()
        digest = known.get((info.st_dev, info.st_ino)) or sha256(file)
        parts[str(file.relative_to(folder))] = {"size": info.st_size, "sha256": digest}
    return parts


def problems(backup: Backup) -> list[str]:
    """What does not match the manifest: a changed, missing or added file."""
    parts = backup.manifest()["parts"]
    found = {
        str(file.relative_to(backup.path))
        for file in backup.path.rglob("*")
        if file.is_file() and not (file.name == MANIFEST and file.parent == backup.path)
    }
    wrong = [f"{name} is missing" for name in sorted(set(parts) - found)]
    wrong += [f"{name} is not in the manifest" for name in sorted(found - set(parts))]
    for name in sorted(set(parts) & found):
        file = backup.path / name
        if file.stat().st_size != parts[name]["size"]:
            wrong.append(f"{name} has {file.stat().st_size} bytes, the manifest says {parts[name]['size']}")
        elif sha256(file) != parts[name]["sha256"]:
            wrong.append(f"{name} does not match its SHA-256")
    return wrong


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    path.chmod(0o600)


def to_keep(backups: list[Backup], daily: int, weekly: int, monthly: int) -> set[str]:
    """Names retention keeps: the newest backup of each of the newest ``daily`` days that
    have one, likewise ISO weeks and months; and always the newest backup."""
    newest_first = sorted(backups, key=lambda backup: backup.name, reverse=True)
    keep = {newest_first[0].name} if newest_first else set()
    periods = (
        (daily, lambda t: t.date().isoformat()),
        (weekly, lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2])),
        (monthly, lambda t: t.strftime("%Y-%m")),
    )
    for count, period in periods:
        seen: list[str] = []
        for backup in newest_first:
            key = period(backup.taken)
            if key not in seen:
                if len(seen) == count:
                    break
                seen.append(key)
                keep.add(backup.name)
    return keep


def prune(install: Install, last_good: Backup) -> list[str]:
    """After a good backup: remove the unlabelled backups retention does not keep, never
    ``last_good``."""
    scheduled = [backup for backup in all_backups(install) if not _by_hand(backup)]
    p = install.project
    keep = to_keep(scheduled, p.backup_keep_daily, p.backup_keep_weekly, p.backup_keep_monthly) | {last_good.name}
    removed = []
    for backup in scheduled:
        if backup.name not in keep:
            shutil.rmtree(backup.path)
            removed.append(backup.name)
    return removed


def _by_hand(backup: Backup) -> bool:
    """A labelled backup (`backup --label L`, or one a deploy takes before migrating, or a
    restore before it replaces the data): the operator's way back, kept until removed by hand."""
    match = NAME.match(backup.name)
    return match is not None and match["label"] is not None


def remove_partials(install: Install) -> list[str]:
    """Partial folders a killed backup left behind (none is being written: a lock is held)."""
    folder = install.backup_dir
    left = [path for path in folder.glob(PARTIAL + "*") if path.is_dir()] if folder.is_dir() else []
    for path in left:
        shutil.rmtree(path)
    return [path.name for path in left]


def age(backup: Backup, now: datetime.datetime | None = None) -> str:
    seconds = ((now or datetime.datetime.now(datetime.UTC)) - backup.taken).total_seconds()
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def private_dir(path: Path) -> None:
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)
