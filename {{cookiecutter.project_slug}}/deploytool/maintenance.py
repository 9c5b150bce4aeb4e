"""`deploytool maintenance on|off`: the project's "back soon" page for everyone but the
addresses let through, without touching nginx's configuration.

nginx looks for a flag file on every request to the app (a stat, no reload, nothing to
fail; static files and uploads are served as usual):
maintenance/on turns the page on, maintenance/allow-<address> lets that client address
through to the app (the team checking the site before it reopens). /health/ always
reaches the app: the deploy's health check and the balancer see the app's real state.
The same page answers, 503 with Retry-After, whenever the app server is down or too slow
(nginx's own 502 and 504), maintenance or not.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import ipaddress
import os
from pathlib import Path

from .errors import DeployError
from .files import write_atomic
from .layout import NGINX_GROUP, Install
from .progress import say

FLAG = "on"
ALLOW = "allow-"


def client_address(address: str) -> str:
    """An address as nginx writes $remote_addr (canonical text; one address, no network:
    nginx only compares the client's address with file names)."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise DeployError(
            f"--allow {address!r} is not an IP address: give single client addresses (192.0.2.7, 2001:db8::7), "
            "no networks or names"
        ) from None


def state(install: Install) -> tuple[bool, list[str]]:
    """Whether maintenance is on, and the addresses let through."""
    folder = install.maintenance_dir
    names = sorted(os.listdir(folder)) if folder.is_dir() else []
    return FLAG in names, [name.removeprefix(ALLOW) for name in names if name.startswith(ALLOW)]


def folder(install: Install) -> Path:
    """The flag folder. In a sandbox nginx runs as the user: made here when missing. On a
    server nginx's workers must enter it: made by root's `install --part system`."""
    path = install.maintenance_dir
    if install.sandbox:
        path.mkdir(mode=0o750, exist_ok=True)
    elif not path.is_dir() or path.group() != NGINX_GROUP:
        raise DeployError(
            f"{path} is missing or not open to {NGINX_GROUP}, so nginx would not see the flag: "
            f"run `bin/deploytool --root {install.root} install --part system` as root once (it makes it)"
        )
    return path


def turn_on(install: Install, allow: list[str]) -> None:
    addresses = sorted({client_address(address) for address in allow})
    path = folder(install)
    _, before = state(install)
    # The allowed addresses first, then the flag: an allowed client never sees the page.
    for address in addresses:
        (path / f"{ALLOW}{address}").touch(mode=0o640)
    since = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    write_atomic(path / FLAG, f"on since {since} by {getpass.getuser()}\n", 0o640)
    for address in set(before) - set(addresses):
        (path / f"{ALLOW}{address}").unlink(missing_ok=True)
    through = f"; let through: {', '.join(addresses)}" if addresses else ""
    say("maintenance", f"on: {install.url} shows the maintenance page (503) to every client{through}")
    say("maintenance", "next: `bin/deploytool maintenance off` when the site may reopen")


def turn_off(install: Install) -> None:
    on, allowed = state(install)
    path = install.maintenance_dir
    # The flag first: the allowed clients keep reaching the app while the rest is removed.
    (path / FLAG).unlink(missing_ok=True)
    for address in allowed:
        (path / f"{ALLOW}{address}").unlink(missing_ok=True)
    say("maintenance", f"off: {install.url} serves everyone" if on else "off already: nothing changed")


def show(install: Install) -> None:
    on, allowed = state(install)
    if not on:
        say("maintenance", "off (`bin/deploytool maintenance on` shows the page to visitors)")
        return
    since = (install.maintenance_dir / FLAG).read_text().strip()
    say("maintenance", f"{since}; let through: {', '.join(allowed) or 'nobody'}")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("state", nargs="?", choices=("on", "off"), help="omit to see whether it is on")
    parser.add_argument(
        "--allow",
        nargs="+",
        default=[],
        metavar="ADDRESS",
        help="client addresses that still reach the site (with on)",
    )


def run(args: argparse.Namespace) -> int:
    install = Install.load(args.root)
    if args.allow and args.state != "on":
        raise DeployError(f"--allow {' '.join(args.allow)} goes with `maintenance on`")
    if args.state == "on":
        turn_on(install, args.allow)
    elif args.state == "off":
        turn_off(install)
    else:
        show(install)
    return 0
