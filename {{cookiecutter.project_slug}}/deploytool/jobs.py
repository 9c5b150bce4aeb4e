"""The install's scheduled jobs (etc/templates/jobs.ini): their names, schedules and what
they may write, as systemd timers and cron lines see them. Read from the templates of the
code that renders (root's own copy for the system part), checked before anything renders."""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DeployError
from .layout import Install

JOBS_FILE = "jobs.ini"
NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
WORD = re.compile(r"^[A-Za-z0-9_.=:-]+$")
DAILY = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
SPREAD = re.compile(r"^[0-9]{1,4}(s|min|h)$")
WRITES = ("data", "backups", "media")
# Which hosts of a fleet with a data host run a job: the one with JOBS=on, the data host, or
# every host. Without a data host (a single server, or every host with its own data) the
# host with JOBS=on runs them all.
ON = ("jobs", "data", "every")
KEYS = {"what", "run", "daily", "every", "spread", "writes", "on"}


@dataclass(frozen=True)
class Job:
    name: str
    what: str
    run: tuple[str, ...]
    daily: str = ""  # HH:MM
    every: str = ""  # N (minutes) or Nh
    spread: str = "0"
    writes: tuple[str, ...] = ()
    on: str = "jobs"

    def runs_on(self, install: Install) -> bool:
        """Whether this host runs the job (ON above)."""
        if install.data_host is None or self.on == "jobs":
            return install.jobs
        return self.on == "every" or "data" in install.roles

    @property
    def on_calendar(self) -> str:
        """systemd's OnCalendar= for the schedule."""
        if self.daily:
            return f"*-*-* {self.daily}:00"
        if self.every.endswith("h"):
            return f"*-*-* 00/{self.every[:-1]}:00:00"
        return f"*-*-* *:00/{self.every}:00"

    @property
    def cron(self) -> str:
        """The five time fields of a cron line for the same schedule."""
        if self.daily:
            hours, minutes = self.daily.split(":")
            return f"{int(minutes)} {int(hours)} * * *"
        if self.every.endswith("h"):
            return f"0 */{self.every[:-1]} * * *"
        return f"*/{self.every} * * * *"

    def unit(self, install: Install) -> str:
        """The systemd service and timer of the job: <site>_<name>."""
        return f"{install.site}_{self.name}"

    def writable(self, install: Install) -> list[Path]:
        folders = {"data": install.data_dir, "backups": install.backup_dir, "media": install.media_root}
        return [install.log_dir, *(folders[name] for name in self.writes)]


def for_host(install: Install) -> list[Job]:
    """The jobs this host runs."""
    return [job for job in load(install) if job.runs_on(install)]


def load(install: Install) -> list[Job]:
    """Every job of jobs.ini, checked; none when the project has no jobs.ini."""
    path = install.templates / JOBS_FILE
    if not path.is_file():
        return []
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    try:
        parser.read_string(path.read_text(), source=str(path))
    except configparser.Error as error:
        raise DeployError(f"{path} does not parse: {error}") from None
    return [_job(path, name, dict(parser[name])) for name in parser.sections()]


def _job(path: Path, name: str, values: dict[str, str]) -> Job:
    def refuse(rule: str) -> DeployError:
        return DeployError(f"{path} [{name}]: {rule}; nothing was rendered")

    if not NAME.match(name):
        raise refuse("a job's name is lowercase letters, digits and -, starting with a letter (max 31)")
    unknown = sorted(set(values) - KEYS)
    if unknown:
        raise refuse(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
    run = tuple(values.get("run", "").split())
    if not run or not all(WORD.match(word) for word in run):
        raise refuse(
            f"run {values.get('run', '')!r} must be deploytool's arguments: words of letters, digits, - _ . = :"
        )
    what = " ".join(values.get("what", name).split())
    if not what.isprintable() or "%" in what:
        raise refuse("what is one line of plain text, without %")
    daily, every = values.get("daily", ""), values.get("every", "")
    if bool(daily) == bool(every):
        raise refuse("give exactly one of daily = HH:MM and every = N (minutes) or Nh (hours)")
    if daily and not DAILY.match(daily):
        raise refuse(f"daily {daily!r} is not HH:MM (00:00-23:59)")
    if every and not _divides(every):
        raise refuse(f"every {every!r} must be minutes dividing 60 (5, 15, 30) or hours dividing 24 (1h, 6h)")
    spread = values.get("spread", "0")
    if spread != "0" and not SPREAD.match(spread):
        raise refuse(f"spread {spread!r} is a duration like 30s, 15min, 1h")
    writes = tuple(values.get("writes", "").split())
    if not set(writes) <= set(WRITES):
        raise refuse(f"writes {values['writes']!r}: any of {', '.join(WRITES)}")
    on = values.get("on", "jobs")
    if on not in ON:
        raise refuse(f"on {on!r}: one of {', '.join(ON)}")
    return Job(name, what, run, daily, every, spread, writes, on)


def _divides(every: str) -> bool:
    hours = every.endswith("h")
    number = every[:-1] if hours else every
    return number.isdigit() and int(number) > 0 and (24 if hours else 60) % int(number) == 0
