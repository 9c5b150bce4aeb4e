"""`deploytool manage [--hosts ...] ARGS...`: a manage.py command in this install, with its
venv and its settings, as the project user (the command runs the project's code: never as
root). With --hosts it runs on each host over SSH, each line prefixed with the host's name.
"""

from __future__ import annotations

import argparse
import os

from . import fleet
from .errors import DeployError
from .layout import Install


def arguments(parser: argparse.ArgumentParser) -> None:
    fleet.host_arguments(parser, "run it on these servers over SSH, each line prefixed with its name")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="manage.py's command and options")


def run(args: argparse.Namespace) -> int:
    install = Install.load(args.root)
    if not args.args:
        raise DeployError("name a manage.py command, e.g. `bin/deploytool manage showmigrations`")
    if args.hosts:
        return fleet.on_hosts(install, args.hosts, args.ssh_config, ["manage", *args.args])
    if os.geteuid() == 0:
        raise DeployError(
            f"manage.py runs the project's code: not as root. As {install.project.user}: "
            f"runuser -u {install.project.user} -- {install.deploytool} manage {' '.join(args.args)}"
        )
    if not install.python.exists():
        raise DeployError(f"{install.python} is missing: run `bin/deploytool install --part user` first")
    os.chdir(install.root)
    os.execv(install.python, [str(install.python), str(install.root / "manage.py"), *args.args])
