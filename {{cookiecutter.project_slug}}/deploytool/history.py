"""The deploy record of an install (data/deploy.json, local data): the live revision, since
when, and the last attempts. `deploy` writes it; `status` shows it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import proc
from .errors import MissingProgram
from .files import write_atomic
from .layout import Install

RECORD = Path("data/deploy.json")
HISTORY = 20  # attempts kept in the record


def read_record(install: Install) -> dict[str, Any]:
    try:
        data = json.loads((install.root / RECORD).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def add_attempt(install: Install, attempt: dict[str, Any], live: dict[str, Any] | None = None) -> None:
    """Record one attempt (newest first, HISTORY kept) and, when it went live, the live revision."""
    record = read_record(install)
    if live is not None:
        record["live"] = live
    record["history"] = [attempt, *record.get("history", [])][:HISTORY]
    write_atomic(install.root / RECORD, json.dumps(record, indent=2) + "\n")


def head(install: Install) -> str | None:
    """The commit checked out in the install, or None (not a git checkout, no commit)."""
    try:
        found = proc.attempt(["git", "-C", install.root, "rev-parse", "--verify", "--quiet", "HEAD"])
    except MissingProgram:
        return None
    return found.stdout.strip() if found.returncode == 0 else None


def short(revision: str) -> str:
    return revision[:12]


def status_lines(install: Install) -> list[str]:
    """What `deploytool status` adds: the live revision and since when, the template version."""
    record = read_record(install)
    live = record.get("live")
    checked_out = head(install)
    if live:
        line = f"{'revision':<11} {short(live['revision'])} live since {live['since']} (deploytool deploy)"
        if checked_out and checked_out != live["revision"]:
            line += f"; {short(checked_out)} is checked out"
    elif checked_out:
        line = f"{'revision':<11} {short(checked_out)} checked out (no deploy recorded yet)"
    else:
        line = f"{'revision':<11} unknown ({install.root} is not a git checkout)"
    lines = [line]
    last = (record.get("history") or [{}])[0]
    if last.get("result") in ("failed", "rolled back", "rollback failed"):
        lines.append(
            f"{'last deploy':<11} {short(last.get('revision') or '?')} failed at {last.get('step')} "
            f"({last.get('at')}): {last.get('result')}"
        )
    lines.append(f"{'template':<11} dj-layout {install.project.template_version}")
    return lines
