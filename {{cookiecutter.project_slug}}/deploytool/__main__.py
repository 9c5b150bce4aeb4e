"""bin/deploytool COMMAND (python -m deploytool in the venv): for this checkout, or --root.

Each command lives in the module that owns it; this table is the only place that knows
them all, with their one-line help. A module exposes its options (``arguments``) and its
``run``; only the module of the command that runs is imported (a short command stays quick).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from .errors import DeployError
from .layout import CODE_ROOT


class Command(NamedTuple):
    module: str  # deploytool's module that owns the command: imported only when it runs
    help: str
    run: str = "run"  # its function (argparse.Namespace) -> exit status
    arguments: str | None = None  # its function that adds the command's options to a parser


COMMANDS: dict[str, Command] = {
    "init": Command("init", "make this checkout an install: env.conf, secrets, links, configs", arguments="arguments"),
    "ports": Command("portmap", "the port map of this install and the project block", arguments="arguments"),
    "render": Command("render", "render etc/templates/ for this install"),
    "check": Command("configcheck", "run the real validators on the rendered configs"),
    "install": Command(
        "install", "put the install in place: system configs (root), venv and app (user)", arguments="arguments"
    ),
    "cert": Command(
        "acme", "certificate via certbot: bootstrap site -> certonly -> final HTTPS site", arguments="arguments"
    ),
    "deploy": Command(
        "deploy", "put a revision live: fetch, deps, migrate, static, reload, health check", arguments="arguments"
    ),
    "backup": Command(
        "backup",
        "back up the database and media/ (and, when asked, the secrets) into backups/",
        arguments="arguments",
    ),
    "backups": Command(
        "backup", "list the backups, newest first, with age, size and whether each verifies", "run_list"
    ),
    "restore": Command(
        "restore", "restore a backup of backups/ (the database and media/) into this install", arguments="arguments"
    ),
    "logs": Command(
        "logs",
        "show this install's logs (app, nginx, services, worker, jobs, backup, deploy, all); -f follows them",
        arguments="arguments",
    ),
    "manage": Command(
        "manage",
        "run a manage.py command in this install's venv as the project user, e.g. manage showmigrations",
        arguments="arguments",
    ),
    "maintenance": Command(
        "maintenance",
        "show the maintenance page (503) to visitors, or stop showing it: on [--allow ADDRESS ...] | off",
        arguments="arguments",
    ),
    "watch": Command(
        "watch", "check the certificate, /health/, the last backup and the disk; mail ADMINS once per problem"
    ),
    "up": Command("sandbox", "the whole stack of this install, as you, on loopback, under .sandbox/", "run_up"),
    "down": Command("sandbox", "stop the sandbox stack: no process, no listening port left", "run_down"),
    "status": Command("sandbox", "what of the stack runs (exit 0 all, 3 none, 1 some)", "run_status"),
}


def function(command: Command, name: str) -> Callable[..., int]:
    """A function of the command's module, imported now: a command loads only what it uses."""
    return getattr(importlib.import_module(f".{command.module}", __package__), name)  # type: ignore[no-any-return]


def chosen(argv: list[str]) -> str | None:
    """The command named on the line, before the whole line is parsed."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--root")
    first.add_argument("command", nargs="?")
    known, _ = first.parse_known_args(argv)
    return known.command if known.command in COMMANDS else None


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bin/deploytool", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=CODE_ROOT, help="install root (default: this checkout)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    name = chosen(argv)
    for each, command in COMMANDS.items():
        sub = commands.add_parser(each, help=command.help)
        if each == name and command.arguments is not None:  # the others' options are never parsed
            function(command, command.arguments)(sub)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    args.root = args.root.resolve()
    try:
        command = COMMANDS[args.command]
        return function(command, command.run)(args)
    except DeployError as error:
        print(f"deploytool {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
