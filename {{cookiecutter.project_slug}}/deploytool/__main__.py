"""bin/deploytool COMMAND (python -m deploytool in the venv): for this checkout, or --root.

Each command lives in the module that owns it; this table is the only place that knows
them all. A module exposes its help, its options (``arguments``) and its ``run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from . import (
    acme,
    backup,
    configcheck,
    deploy,
    init,
    install,
    logs,
    maintenance,
    manage,
    portmap,
    render,
    restore,
    sandbox,
    watch,
)
from .errors import DeployError
from .layout import CODE_ROOT


class Command(NamedTuple):
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS: dict[str, Command] = {
    "init": Command(init.HELP, init.run, init.arguments),
    "ports": Command(portmap.HELP, portmap.run, portmap.arguments),
    "render": Command(render.HELP, render.run),
    "check": Command(configcheck.HELP, configcheck.run),
    "install": Command(install.HELP, install.run, install.arguments),
    "cert": Command(acme.HELP, acme.run, acme.arguments),
    "deploy": Command(deploy.HELP, deploy.run, deploy.arguments),
    "backup": Command(backup.HELP, backup.run, backup.arguments),
    "backups": Command(backup.LIST_HELP, backup.run_list),
    "restore": Command(restore.HELP, restore.run, restore.arguments),
    "logs": Command(logs.HELP, logs.run, logs.arguments),
    "manage": Command(manage.HELP, manage.run, manage.arguments),
    "maintenance": Command(maintenance.HELP, maintenance.run, maintenance.arguments),
    "watch": Command(watch.HELP, watch.run),
    "up": Command(sandbox.UP, sandbox.run_up),
    "down": Command(sandbox.DOWN, sandbox.run_down),
    "status": Command(sandbox.STATUS, sandbox.run_status),
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bin/deploytool", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=CODE_ROOT, help="install root (default: this checkout)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help)
        if command.arguments is not None:
            command.arguments(sub)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    args.root = args.root.resolve()
    try:
        return COMMANDS[args.command].run(args)
    except DeployError as error:
        print(f"deploytool {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
