"""manage.py, run for the install, and the migration state it reports."""

from __future__ import annotations

import json
from pathlib import Path

from . import proc
from .errors import DeployError
from .layout import Install


def manage(install: Install, *args: str, timeout: float = 900) -> str:
    """Run manage.py with the venv's Python in the install root; DeployError with its output."""
    return _python(install, [install.root / "manage.py", *args], f"manage.py {' '.join(args)}", timeout)


# manage.py's commands one after the other in one Python, as manage.py runs each: Django
# starts once rather than once a command (~0.4 s each). argv: the settings module, then a
# command line per argument.
IN_ONE = """
import os, sys
from django.core.management import execute_from_command_line
os.environ.setdefault("DJANGO_SETTINGS_MODULE", sys.argv[1])
for command in sys.argv[2:]:
    execute_from_command_line(["manage.py", *command.split()])
"""


def manage_in_one(install: Install, *commands: str, timeout: float = 900) -> str:
    """Run several manage.py command lines ("migrate --noinput") in one Python, in order;
    their output together, or DeployError at the first that fails."""
    argv = ["-c", IN_ONE, f"{install.project.project_slug}.settings", *commands]
    return _python(install, argv, f"manage.py {', '.join(commands)}", timeout)


def _python(install: Install, argv: list[str | Path], what: str, timeout: float) -> str:
    """The venv's Python in the install root; DeployError with its output."""
    if not install.python.exists():
        raise DeployError(f"{install.python} is missing: {install.deploytool} install --part user")
    return proc.run([install.python, *argv], what, cwd=install.root, timeout=timeout)


def applied_migrations(install: Install, missing_ok: bool = False) -> list[str]:
    """Applied migrations, in plan order (manage.py showmigrations --plan: "[X]  app.0001_name")."""
    try:
        out = manage(install, "showmigrations", "--plan")
    except DeployError:
        if missing_ok:
            return []
        raise
    return [line.split()[1] for line in out.splitlines() if line.startswith("[X]")]


def by_app(install: Install, applied_only: bool = True) -> dict[str, list[str]]:
    """app -> its migrations: the applied ones, or every one the code has (showmigrations --list)."""
    found: dict[str, list[str]] = {}
    app = ""
    for line in manage(install, "showmigrations", "--list").splitlines():
        entry = line.strip()
        if line and not line.startswith(" "):
            app = entry
            found[app] = []
        elif entry.startswith("[") and (not applied_only or entry.startswith("[X]")):
            found[app].append(entry[3:].strip().split(" ")[0])
    return found


def planned(install: Install) -> bool:
    """Whether migrate would apply anything (the code has migrations the database lacks)."""
    return "No planned migration operations." not in manage(install, "migrate", "--plan")


# The django_migrations table itself: showmigrations lists only what the code has, and a
# backup must also name an applied migration the code checked out now does not know.
RECORDED = (
    "import json; from django.db import connection; "
    "from django.db.migrations.recorder import MigrationRecorder; "
    "found = {}; applied = sorted(MigrationRecorder(connection).applied_migrations()); "
    "[found.setdefault(app, []).append(name) for app, name in applied]; "
    "print(json.dumps(found))"
)


def recorded(install: Install) -> dict[str, list[str]]:
    """app -> every migration the database records as applied, known to the code or not."""
    out = manage(install, "shell", "--no-imports", "-c", RECORDED)
    return json.loads(out.strip().splitlines()[-1])
