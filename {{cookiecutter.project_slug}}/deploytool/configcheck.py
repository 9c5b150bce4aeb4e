"""`deploytool check`: the real validators (nginx -t, systemd-analyze, logrotate, shellcheck,
manage.py check), run on this install's rendered configs."""

from __future__ import annotations

import argparse
import configparser
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import firewall, proc
from .errors import DeployError
from .layout import Install
from .render import FIREWALL, outputs, render_text


@dataclass
class Result:
    name: str
    ok: bool
    detail: str = ""
    skipped: bool = False  # not run, and said why: never shown as a pass


def validate(name: str, argv: list[str], stderr_fails: bool = False, cwd: Path | None = None) -> Result:
    """One validator's verdict; a validator that is not installed fails, saying how to install it."""
    exe = proc.find(argv[0])
    if exe is None:
        return Result(name, False, f"{argv[0]} is not installed: {proc.how_to_install(argv[0])}")
    done = proc.attempt([exe, *argv[1:]], cwd=cwd)
    ok = done.returncode == 0 and not (stderr_fails and done.stderr.strip())
    return Result(name, ok, (done.stdout + done.stderr).strip())


NGINX_TEMPS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def check_nginx(install: Install, tmp: Path) -> Iterator[Result]:
    """nginx -t on each site, with a throwaway certificate and log folder (the real ones
    exist only after `install` and `cert`), and this install's own acme snippet."""
    cert = tmp / "cert"
    cert.mkdir()
    made = validate(
        "openssl: throwaway certificate",
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={install.site}",
            "-keyout",
            str(cert / "privkey.pem"),
            "-out",
            str(cert / "fullchain.pem"),
        ],
    )
    if not made.ok:
        yield made
        return
    (tmp / "logs").mkdir()
    overrides = {"cert_dir": cert, "log_dir": tmp / "logs", "nginx_dir": install.etc_dir / "nginx"}
    for template, path in outputs(install).items():
        if not template.startswith("nginx/") or "sites-available" not in str(path):
            continue
        site = tmp / path.name
        site.write_text(render_text(install, template, **overrides))
        conf = tmp / f"{path.name}.main.conf"
        # nginx -t makes its temp folders: in tmp, not /var/lib/nginx (root's until nginx ran)
        temps = "".join(f"    {kind}_temp_path {tmp}/{kind};\n" for kind in NGINX_TEMPS)
        conf.write_text(
            f"error_log {tmp}/error.log;\npid {tmp}/nginx.pid;\nevents {{}}\n"
            f"http {{\n    include /etc/nginx/mime.types;\n{temps}    include {site};\n}}\n"
        )
        yield validate(f"nginx -t {path.name}", ["nginx", "-t", "-q", "-e", f"{tmp}/error.log", "-c", str(conf)])


def nginx_valid(install: Install) -> None:
    """Raise unless the install's sites pass nginx -t: run before anything is put in place."""
    with tempfile.TemporaryDirectory(prefix="deploytool-nginx-") as tmp:
        failed = [result for result in check_nginx(install, Path(tmp)) if not result.ok]
    if failed:
        details = "; ".join(f"{result.name}: {result.detail}" for result in failed)
        raise DeployError(f"the rendered nginx config fails, nothing was changed: {details}")


# supervisor files -> how many [program:] sections each must have (None: any number).
SUPERVISOR_PROGRAMS: dict[str, int | None] = {
    "supervisor/app.conf.j2": 1,
    "supervisor/worker.conf.j2": 1,
    "supervisor/install.conf.j2": 1,
    "supervisor/services.conf.j2": None,
}


def check_units(install: Install, tmp: Path) -> Iterator[Result]:
    for template, path in outputs(install).items():
        if template.startswith("systemd/") and path.suffix in (".service", ".timer"):
            # verify exits 0 on most warnings and prints them: any stderr counts as a failure.
            yield validate(f"systemd-analyze verify {path.name}", ["systemd-analyze", "verify", str(path)], True)
        elif template in SUPERVISOR_PROGRAMS:
            yield check_supervisor(path, SUPERVISOR_PROGRAMS[template])
        elif template.startswith("logrotate"):
            yield check_logrotate(path, tmp)


def check_logrotate(path: Path, tmp: Path) -> Result:
    """logrotate -d on a copy owned by whoever runs the check: logrotate ignores a file of
    another owner ("Ignoring …", exit 0), which would check nothing. Any error: fails."""
    copy = tmp / path.name
    copy.write_text(path.read_text())
    result = validate(f"logrotate -d {path.name}", ["logrotate", "-d", "-s", str(tmp / "state"), str(copy)])
    if "error:" in result.detail:
        result.ok = False
    return result


def check_supervisor(path: Path, programs: int | None) -> Result:
    """Each [program:] has a command whose program exists; ``programs``: how many there must be."""
    parser = configparser.RawConfigParser()
    name = f"supervisor {path.name}"
    try:
        parser.read(path)
        sections = [s for s in parser.sections() if s.startswith("program:")]
        if programs is not None and len(sections) != programs:
            return Result(name, False, f"{len(sections)} [program:] sections, expected {programs}")
        commands = [shlex.split(parser[section]["command"])[0] for section in sections]
    except (configparser.Error, ValueError, KeyError, IndexError) as error:
        return Result(name, False, f"a [program:] without a command: {error}")
    missing = [command for command in commands if not Path(command).is_file()]
    return Result(name, not missing, f"commands {missing} do not exist" if missing else "")


def check_firewall(install: Install, tmp: Path) -> Iterator[Result]:
    """nft -c on the install's rules: parsed and checked by the kernel's own nftables, never
    loaded. As root directly; as anyone else in a user and network namespace of its own
    (unshare -rn), where the check is allowed and nothing of the host's is touched."""
    path = outputs(install).get(FIREWALL)
    if path is None:
        why = "" if firewall.applies(install) else ": APP_BIND is set but not FLEET_HOST, so the fronts are not known"
        yield Result(
            "nftables rules",
            False,
            f"not rendered{why}; run `deploytool init --fleet-host NAME` (its section in etc/fleet.ini)",
        )
        return
    nft = proc.find("nft")
    if nft is None:
        yield Result(f"nft -c {path.name}", False, f"nft is not installed: {proc.how_to_install('nft')}")
        return
    argv = [nft, "-c", "-f", str(path)]
    yield validate(f"nft -c {path.name}", argv if os.geteuid() == 0 else ["unshare", "-rn", *argv])


def check_scripts(install: Install, tmp: Path) -> Iterator[Result]:
    if proc.find("shellcheck") is None:
        # A developer's tool (requirements-dev.txt), seldom on a server: say so, never pass.
        why = f"shellcheck is not installed, the scripts were not checked: {proc.how_to_install('shellcheck')}"
        yield Result("shellcheck", True, why, skipped=True)
        return
    scripts = sorted(path for path in install.root.glob("bin/*") if path.is_file()) + [
        path for path in outputs(install).values() if path.suffix == ".sh"
    ]
    yield validate("shellcheck", ["shellcheck", "-x", *map(str, scripts)], cwd=install.root)


def check_django(install: Install, tmp: Path) -> Iterator[Result]:
    python = str(install.python if install.python.exists() else sys.executable)
    manage = [python, str(install.root / "manage.py"), "check"]
    yield validate("manage.py check", manage, cwd=install.root)
    if install.is_production:
        yield validate("manage.py check --deploy", [*manage, "--deploy", "--fail-level", "WARNING"], cwd=install.root)


CHECKS: list[Callable[[Install, Path], Iterator[Result]]] = [
    check_nginx,
    check_units,
    check_firewall,
    check_scripts,
    check_django,
]


def check(install: Install) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="deploytool-check-") as tmp:
        for step in CHECKS:
            folder = Path(tmp) / step.__name__
            folder.mkdir()
            results.extend(step(install, folder))
    return results


def run(args: argparse.Namespace) -> int:
    results = check(Install.load(args.root))
    for result in results:
        print(f"{'skip' if result.skipped else 'ok  ' if result.ok else 'FAIL'} {result.name}")
        if (result.skipped or not result.ok) and result.detail:
            print("     " + result.detail.replace("\n", "\n     "))
    return 0 if all(result.ok for result in results) else 1
