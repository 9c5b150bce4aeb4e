"""python -m deploytool COMMAND: run from the install root (or anywhere with --root)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import fleet, letsencrypt, portcheck, ports
from .certs import issued, sandbox_ca
from .check import check
from .deploy import deploy
from .errors import DeployError
from .init import init, summary
from .install import install as install_
from .layout import Install
from .render import render
from .sandbox import down, status, up, url

ROOT = Path(__file__).resolve().parent.parent  # the checkout deploytool ships in


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploytool", description=__doc__)
    parser.add_argument("--root", type=Path, default=ROOT, help="install root (default: this checkout)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub = commands.add_parser("init", help="make this checkout an install: env.conf, secrets, links, configs")
    sub.add_argument("--install-type", required=True, choices=list(ports.SLOTS))
    sub.add_argument(
        "--system-root",
        type=Path,
        default=Path("/"),
        help="where /etc, /var and /run are (default /; a folder for a sandbox)",
    )
    sub.add_argument(
        "--app-bind",
        metavar="ADDRESS",
        help="this host's private address, for other hosts' nginx (default: a unix socket; kept when omitted)",
    )
    sub = commands.add_parser("ports", help="the port map of this install and the project block")
    portcheck.add_arguments(sub)
    commands.add_parser("render", help="render etc/templates/ for this install")
    commands.add_parser("check", help="run the real validators on the rendered configs")
    sub = commands.add_parser("install", help="put the install in place: system configs (root), venv and app (user)")
    sub.add_argument(
        "--root",
        dest="system_root",
        type=Path,
        help="system root to install under (default: env.conf's; as root: /)",
    )
    sub.add_argument(
        "--part",
        choices=["system", "user", "all"],
        help="system (as root), user (as the project user); default: what the current user may do",
    )
    sub = commands.add_parser("cert", help="certificate via certbot: bootstrap site -> certonly -> final HTTPS site")
    sub.add_argument("--server", help="ACME directory URL (default Let's Encrypt; staging or a private CA)")
    sub.add_argument("--ca-bundle", type=Path, help="PEM file trusted for the ACME server's HTTPS (a private CA)")
    sub.add_argument("--no-www", dest="www", action="store_false", help="leave the www name out (pro)")
    sub.add_argument("--email", help="account e-mail for expiry notices (default: cli.ini's)")
    sub = commands.add_parser("deploy", help="put a revision live: fetch, deps, migrate, static, reload, health check")
    sub.add_argument("revision", nargs="?", help="commit, tag or branch (default: the tracked remote branch)")
    sub.add_argument("--health-timeout", type=float, default=30.0, help="seconds /health/ has to answer (default 30)")
    fleet.add_arguments(sub)
    commands.add_parser("up", help="the whole stack of this install, as you, on loopback, under .sandbox/")
    commands.add_parser("down", help="stop the sandbox stack: no process, no listening port left")
    commands.add_parser("status", help="what of the stack runs (exit 0 all, 3 none, 1 some)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    root = args.root.resolve()
    try:
        if args.command == "init":
            install = init(root, args.install_type, args.system_root.resolve(), args.app_bind)
            print(summary(install))
            return 0
        if args.command == "install" and os.geteuid() == 0 and args.part in (None, "system"):
            # root reads the user's checkout as data only, with the code and answers of this copy
            system_root = (args.system_root or Path("/")).resolve()
            return run_install(Install.for_root(ROOT, root, system_root), None, "system")
        install = Install.load(root)
        if args.command == "ports":
            if args.check:
                return portcheck.main(install, args)
            print(ports.describe(install.project.port_block_start, install.install_type))
        elif args.command == "render":
            changed = render(install)
            print("\n".join(f"rendered {path.relative_to(root)}" for path in changed) or "nothing changed")
        elif args.command == "check":
            results = check(install)
            for result in results:
                print(f"{'ok  ' if result.ok else 'FAIL'} {result.name}")
                if not result.ok and result.detail:
                    print("     " + result.detail.replace("\n", "\n     "))
            return 0 if all(result.ok for result in results) else 1
        elif args.command == "install":
            return run_install(install, args.system_root, args.part)
        elif args.command == "cert":
            request = letsencrypt.Request(args.server, args.ca_bundle, args.www, args.email)
            for line in letsencrypt.cert(install, request):
                print(line, flush=True)
        elif args.command == "deploy":
            if args.hosts:
                return fleet.main(install, args)
            return deploy(install, args.revision, args.health_timeout)
        elif args.command == "up":
            install = up(install)
            print(f"up: {url(install)}  (the {install.install_type} install, as {install.project.user})")
            resolve = f"--resolve {install.site}:{install.ports['https']}:127.0.0.1 {url(install)}"
            if issued(install):
                print(f"    serving the certificate certbot issued ({install.cert_dir}); curl {resolve}")
            else:
                print(f"    trust {sandbox_ca(install)}; curl --cacert it {resolve}")
        elif args.command == "down":
            stopped = down(install)
            print("down: stopped " + (", ".join(stopped) if stopped else "nothing (nothing was running)"))
        elif args.command == "status":
            code, lines = status(install)
            print("\n".join(lines))
            return code
    except DeployError as error:
        print(f"deploytool {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


def run_install(install: Install, system_root: Path | None, part: str | None) -> int:
    import dataclasses

    if system_root is not None:
        install = dataclasses.replace(install, system_root=system_root.resolve())
    if part is None:
        part = "all" if install.sandbox else ("system" if os.geteuid() == 0 else "user")
    changes = install_(install, part)
    print("\n".join(changes) if changes else f"install ({part}): no change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
