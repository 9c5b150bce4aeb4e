"""`deploytool deploy [REV] --hosts web1,web2`: a rolling deploy to several servers over SSH
with Fabric 3, one host at a time, so the others keep serving behind nginx.

On each host, in its install root and as the project user, it runs that host's own
`bin/deploytool deploy REV` (fetch, migrate, graceful reload, health check, rollback on
failure): the same deploy as by hand, nothing re-implemented here. The roll-out stops at the
first host whose deploy fails; that host has rolled itself back, the hosts after it were not
touched (old revision), the hosts before it run the new one. Every host ends on the same
commit: the first host resolves REV, the others are given the commit it resolved.

Hosts are named on the command line; their details come from the inventory etc/fleet.ini
(deploytool/inventory.py says what it holds).

The fronts go first (their collectstatic keeps the old revision's hashed files beside the
new: a page of either revision finds its static files while the app hosts move), then the
data host. With a data host, the database is one: the first host that holds it or serves the
app migrates, the others deploy with --skip-migrate.

Exactly one host of a roll-out runs the scheduled jobs (and Celery beat): the others have
JOBS=off in their env.conf (`deploytool init --jobs off`); a roll-out over two hosts that
both run them is refused before anything is deployed.

A host of the inventory that has the project user but no checkout yet is prepared after
the others are live (seed 002's fabfile: folder, checkout, settings, init, the user part), and
the summary gives the one command root runs there; the next roll-out deploys it.

Without an inventory, the names are SSH host names. SSH is strict: a host key must already
be in known_hosts (ssh_config's UserKnownHostsFile, default ~/.ssh/known_hosts, and
/etc/ssh/ssh_known_hosts); an unknown or changed key stops everything before any deploy.
The remote deploy's output is streamed here and appended to logs/deploy.log on the host; a
lost SSH connection does not interrupt a deploy half-way (it finishes or rolls back there).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import proc
from .errors import DeployError
from .inventory import PATH as INVENTORY
from .inventory import Host, with_role
from .layout import Install

if TYPE_CHECKING:
    from fabric import Connection

NAME = re.compile(r"[A-Za-z0-9_.@\[\]:-]+")
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts ~/.ssh/known_hosts2"
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2"
CONNECT_TIMEOUT = 10  # seconds to reach a host's sshd
LOG = "logs/deploy.log"  # on each host, in its install root

# Exit statuses: every host live; stopped at a failing host; nothing deployed; a host's
# rollback failed (the host's own deploy statuses are 0 live, 1 rolled back, 2 nothing
# changed, 3 rollback failed).
ALL_LIVE, STOPPED, NOTHING_DEPLOYED, ROLLBACK_FAILED = 0, 1, 2, 3
PREPARED = 4  # every host live, and a new one prepared: it waits for its root command


@dataclass
class Outcome:
    """What happened on one host."""

    host: Host
    result: str = "not deployed"
    before: str = ""
    after: str = ""
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Prefixed:
    """A text stream that writes each line of what it is given with the host's name in front,
    and keeps the last lines (the remote deploy's verdict) for the summary."""

    out: IO[str]
    prefix: str
    partial: str = ""
    lines: list[str] = field(default_factory=list)

    def write(self, text: str) -> int:
        self.partial += text
        *done, self.partial = self.partial.split("\n")
        for line in done:
            self.out.write(f"{self.prefix}{line}\n")
            self.lines = [*self.lines[-19:], line]
        self.out.flush()
        return len(text)

    def flush(self) -> None:  # invoke flushes after every chunk: a line may still be partial
        self.out.flush()

    def finish(self) -> None:
        if self.partial:
            self.write("\n")


def host_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--hosts and --ssh-config, for a command that also runs on other servers."""
    parser.add_argument("--hosts", metavar="NAME,...", help=f"{what}: names from etc/fleet.ini, or 'all'")
    parser.add_argument(
        "--ssh-config",
        type=Path,
        metavar="FILE",
        help="ssh_config for --hosts (default: ~/.ssh/config and /etc/ssh/ssh_config)",
    )


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options `deploy` gets for a rolling deploy (parsed by __main__)."""
    host_arguments(parser, "deploy to these servers over SSH, one at a time")


def run(install: Install, args: argparse.Namespace) -> int:
    hosts = select(install, args.hosts)
    return roll_out(install, hosts, args.revision, args.health_timeout, args.ssh_config)


# ---- the inventory -----------------------------------------------------------------------------
def select(install: Install, names: str) -> list[Host]:
    """The hosts --hosts names, in that order: inventory entries, or plain SSH host names."""
    known = install.fleet  # etc/fleet.ini's hosts, in file order ({} without one)
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    if wanted == ["all"]:
        if not known:
            raise DeployError(f"--hosts all: {install.root / INVENTORY} lists no host: add a [NAME] section per server")
        return list(known.values())
    if not wanted:
        raise DeployError(f"--hosts {names!r} names no host: give NAME,NAME,... or all")
    repeated = sorted({name for name in wanted if wanted.count(name) > 1})
    if repeated:
        raise DeployError(f"--hosts names {', '.join(repeated)} twice: name each host once")
    hosts = []
    for name in wanted:
        if known and name not in known:
            raise DeployError(
                f"--hosts {name}: not in {install.root / INVENTORY} ({', '.join(known)}): "
                "fix the name, or add a section for that server"
            )
        if not NAME.fullmatch(name):
            raise DeployError(f"--hosts {name!r} is not a host name or address")
        user = install.project.user
        hosts.append(known.get(name) or Host(name, name, user, None, install.default_root(user)))
    return hosts


# ---- SSH --------------------------------------------------------------------------------------
def fabric_config(ssh_config: Path | None) -> Any:
    try:
        from fabric import Config
    except ImportError:
        raise DeployError(
            f"Fabric is not installed for {sys.executable}: --hosts deploys over SSH with Fabric 3 "
            "(and paramiko): pip install -r requirements-dev.txt"
        ) from None
    if ssh_config is None:
        return Config()
    if not ssh_config.is_file():
        raise DeployError(f"--ssh-config {ssh_config}: no such file")
    return Config(runtime_ssh_path=str(ssh_config))


def known_hosts_files(connection: Connection) -> list[str]:
    """ssh's known_hosts files for this host (UserKnownHostsFile, GlobalKnownHostsFile)."""
    config = connection.ssh_config
    names = f"{config.get('userknownhostsfile', DEFAULT_KNOWN_HOSTS)} "
    names += config.get("globalknownhostsfile", GLOBAL_KNOWN_HOSTS)
    return [os.path.expanduser(name) for name in names.split()]


def connect(host: Host, config: Any) -> Connection:
    """An open SSH connection whose host key was checked against known_hosts."""
    import paramiko
    from fabric import Connection

    connection = Connection(
        host.address, user=host.user, port=host.port, config=config, connect_timeout=CONNECT_TIMEOUT
    )
    files = known_hosts_files(connection)
    for path in files:
        if os.path.isfile(path):
            connection.client.load_system_host_keys(path)
    # Fabric accepts any host key by default (AutoAddPolicy): a deploy refuses unknown ones.
    connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    target = f"{connection.host}:{connection.port}"
    try:
        connection.open()
    except paramiko.BadHostKeyException as error:
        raise DeployError(
            f"{host.name}: the host key of {target} is NOT the one in known_hosts (got "
            f"{error.key.get_name()} {error.key.fingerprint}): the server was reinstalled, or this is not it. "
            "Check with its administrator before removing the old key (ssh-keygen -R)"
        ) from None
    except paramiko.SSHException as error:
        if "not found in known_hosts" in str(error):
            raise DeployError(
                f"{host.name}: {target}'s host key is not in known_hosts ({', '.join(files)}): compare its "
                "fingerprint with the server's (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub there), then "
                f"add it: ssh-keyscan -p {connection.port} {connection.host} >> ~/.ssh/known_hosts"
            ) from None
        raise DeployError(f"{host.name}: SSH to {host.user}@{target} failed: {error}") from None
    except OSError as error:
        raise DeployError(f"{host.name}: cannot reach {target} over SSH: {error}") from None
    transport = connection.client.get_transport()
    if transport is not None:
        transport.set_keepalive(15)  # notice a dead connection during a long deploy
    return connection


def remote_head(connection: Connection, host: Host) -> str:
    """The commit the host's install has checked out ('' when unknown)."""
    result = connection.run(
        f"git -C {shlex.quote(str(host.root))} rev-parse HEAD", hide=True, warn=True, in_stream=False
    )
    return result.stdout.strip() if result.ok else ""


def preflight(
    install: Install,
    hosts: list[Host],
    config: Any,
    nothing: str = "nothing was deployed",
    bare: list[Host] | None = None,
) -> dict[str, Connection]:
    """Reach every host and find its install before deploying anywhere: a host that is down
    or unknown stops the roll-out before it starts, not half-way. With ``bare``, a host that
    has the project user but no checkout at its root yet is put there, to be prepared."""
    connections: dict[str, Connection] = {}
    problems = []
    python = f"{install.venv_name}/bin/python"
    for host in hosts:
        try:
            connection = connect(host, config)
        except DeployError as error:
            problems.append(str(error))
            continue
        connections[host.name] = connection
        root = shlex.quote(str(host.root))
        probe = f"cd {root} && test -x {python} && git rev-parse --verify --quiet HEAD >/dev/null"
        if connection.run(probe, hide=True, warn=True, in_stream=False).ok:
            continue
        if bare is not None and connection.run(f"test ! -e {root}/.git", hide=True, warn=True, in_stream=False).ok:
            bare.append(host)
        else:
            problems.append(
                f"{host.name}: no install at {host.where} ({host.root}/{python} and a git checkout): clone and "
                "install it there first (bin/deploytool init, install), or fix root in etc/fleet.ini"
            )
    if problems:
        for connection in connections.values():
            connection.close()
        raise DeployError(f"{nothing}: " + "; ".join(problems))
    return connections


def runs_jobs(connection: Connection, host: Host) -> bool:
    """Whether the host's env.conf has the scheduled jobs on (JOBS=on, or no JOBS line)."""
    read = f"sed -n 's/^JOBS=//p' {shlex.quote(str(host.root))}/etc/env.conf"
    return connection.run(read, hide=True, warn=True, in_stream=False).stdout.strip().strip("'\"") != "off"


# ---- one command on every host ----------------------------------------------------------------
def deploytool_line(install: Install, argv: list[str]) -> str:
    """`deploytool ARGV` with the install's venv, as a host runs it in its install root."""
    return shlex.join([f"{install.venv_name}/bin/python", "-m", "deploytool", *argv])


def remote_deploytool(install: Install, host: Host, argv: list[str]) -> str:
    """`deploytool ARGV` in the host's install root, as its project user."""
    return f"cd {shlex.quote(str(host.root))} && exec {deploytool_line(install, argv)}"


def on_hosts(install: Install, names: str, ssh_config: Path | None, argv: list[str]) -> int:
    """Run `deploytool ARGV` on the hosts at the same time, streaming each line with the
    host's name in front, until all have finished (or Ctrl-C). Returns the worst exit status."""
    import threading

    hosts = select(install, names)
    connections = preflight(install, hosts, fabric_config(ssh_config), "nothing was run")
    statuses: dict[str, int] = {}

    def one(host: Host) -> None:
        out, err = Prefixed(sys.stdout, f"[{host.name}] "), Prefixed(sys.stderr, f"[{host.name}] ")
        try:
            result = connections[host.name].run(
                remote_deploytool(install, host, argv),
                warn=True,
                hide=False,
                out_stream=out,
                err_stream=err,
                in_stream=False,
            )
            statuses[host.name] = result.exited
        except Exception as error:  # the connection is gone
            err.write(f"SSH connection lost ({type(error).__name__}: {error})\n")
            statuses[host.name] = 2
        finally:
            out.finish()
            err.finish()

    threads = [threading.Thread(target=one, args=(host,), daemon=True) for host in hosts]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except KeyboardInterrupt:
        return 130
    finally:
        for connection in connections.values():
            connection.close()
    return max(statuses.values(), default=2)


# ---- the roll-out -----------------------------------------------------------------------------
def deploy_command(
    install: Install, host: Host, revision: str | None, health_timeout: float, skip_migrate: bool = False
) -> str:
    """The host's own deploy, in its install root. Through `tee -p`, which ignores a closed
    SSH channel: the deploy never dies of a broken pipe half-way; the log keeps its output."""
    deploy = ["deploy", *([revision] if revision else []), "--health-timeout", f"{health_timeout:g}"]
    deploy += ["--skip-migrate"] if skip_migrate else []
    script = (
        f"cd {shlex.quote(str(host.root))} || exit 2; "
        f"{deploytool_line(install, deploy)} 2>&1 | tee -p -a {LOG}; exit ${{PIPESTATUS[0]}}"
    )
    return f"bash -c {shlex.quote(script)}"


def deploy_host(
    install: Install,
    connection: Connection,
    outcome: Outcome,
    revision: str | None,
    timeout: float,
    skip_migrate: bool = False,
) -> int:
    host = outcome.host
    outcome.before = remote_head(connection, host)
    started = time.monotonic()
    out, err = Prefixed(sys.stdout, f"[{host.name}] "), Prefixed(sys.stderr, f"[{host.name}] ")
    try:
        result = connection.run(
            deploy_command(install, host, revision, timeout, skip_migrate),
            warn=True,
            hide=False,
            out_stream=out,
            err_stream=err,
            in_stream=False,
        )
        status = result.exited
    except KeyboardInterrupt:
        outcome.result, outcome.detail = "interrupted", f"the deploy goes on there: see {host.root}/{LOG}"
        raise
    except Exception as error:  # paramiko/socket errors: the connection is gone
        status = -1
        outcome.detail = f"SSH connection lost ({type(error).__name__}: {error}); see {host.root}/{LOG} there"
    finally:
        out.finish()
        err.finish()
        outcome.seconds = time.monotonic() - started
    try:
        outcome.after = remote_head(connection, host)
    except Exception:  # the connection is gone: the summary says so
        outcome.after = ""
    outcome.result = {0: "live", 1: "rolled back", 2: "not changed", 3: "ROLLBACK FAILED"}.get(status, "failed")
    if status != 0 and not outcome.detail:
        verdict = [line for line in out.lines if line.startswith("deploytool deploy:")]
        outcome.detail = (verdict or out.lines or [f"exit status {status}"])[-1].removeprefix("deploytool deploy: ")
    return status


def roll_out(
    install: Install, hosts: list[Host], revision: str | None, health_timeout: float, ssh_config: Path | None
) -> int:
    config = fabric_config(ssh_config)
    names = ", ".join(host.name for host in hosts)
    print(f"fleet: {len(hosts)} host(s): {names}; checking SSH and installs before deploying anywhere", flush=True)
    bare: list[Host] = []
    connections = preflight(install, hosts, config, bare=bare)
    if bare:
        print(f"fleet: {', '.join(host.name for host in bare)}: no install yet, prepared after the others", flush=True)
    hosts = [host for host in hosts if host not in bare]
    running_jobs = [host.name for host in hosts if runs_jobs(connections[host.name], host)]
    if len(running_jobs) > 1:
        for connection in connections.values():
            connection.close()
        raise DeployError(
            f"nothing was deployed: {' and '.join(running_jobs)} all run the scheduled jobs (JOBS=on in env.conf), "
            "so each job would run on every one of them: keep it on one host, and on the others run "
            f"bin/deploytool init --install-type {install.install_type} --jobs off"
        )
    outcomes = [Outcome(host, before=remote_head(connections[host.name], host)) for host in in_order(hosts)]
    shared = bool(with_role(install.fleet, "data"))  # one database: migrated once, by the first that can
    migrated = False
    status = ALL_LIVE
    try:
        for index, outcome in enumerate(outcomes):
            host = outcome.host
            print(f"fleet: {host.name} ({host.where}): deploying {revision or 'its tracked branch'}", flush=True)
            code = deploy_host(install, connections[host.name], outcome, revision, health_timeout, migrated)
            if code != 0:
                status = ROLLBACK_FAILED if code == 3 else STOPPED
                break
            if index == 0 and outcome.after:
                revision = outcome.after  # the others get exactly the commit the first one runs
            migrated = migrated or (shared and bool({"app", "data"} & set(host.roles)))
        for host in bare if status == ALL_LIVE else []:
            outcome = Outcome(host)
            outcomes.append(outcome)
            status = max(status, prepare(install, host, connections, config, revision, outcome))
    except KeyboardInterrupt:
        status = STOPPED
    finally:
        for connection in connections.values():
            connection.close()
    for outcome in outcomes:
        if outcome.result == "not deployed":
            outcome.detail = "roll-out stopped before this host: not touched"
    print("\n".join(summary(outcomes, revision)), flush=True)
    return status


# ---- a new host (seed 002's fabfile) ------------------------------------------------------------
def prepare(
    install: Install,
    host: Host,
    connections: dict[str, Connection],
    config: Any,
    revision: str | None,
    outcome: Outcome,
) -> int:
    """A host that has the project user but no install, prepared as the project user there:
    its folder, a checkout of this checkout's upstream at the roll-out's revision (tracking
    the same branch), the data host's settings_local.py (mode 600) in a fleet that has one,
    `init` with its roles and private address (jobs off: one host runs them), and the user
    part of `install` without migrate (the site's database is migrated already). Root's part
    stays in the admin's hands: the user part's last line is the one command root runs
    there. Returns PREPARED, or STOPPED when a step failed (the summary names it)."""
    connection = connections[host.name]
    url, branch = upstream(install)
    root = shlex.quote(str(host.root))
    checkout = [
        f"mkdir -p {root}",
        f"cd {root}",
        f"git init -q -b {shlex.quote(branch)}",
        f"git remote add origin {shlex.quote(url)}",
        f"git fetch -q origin {shlex.quote(branch)}",
        f"git checkout -q -B {shlex.quote(branch)} {shlex.quote(revision or 'origin/' + branch)}",
        f"git branch -q -u {shlex.quote('origin/' + branch)}",
    ]
    init = ["init", "--install-type", install.install_type, "--fleet-host", host.name, "--jobs", "off"]
    init += ["--app-bind", host.private] if "app" in host.roles and host.private else []
    steps = [("checkout", " && ".join(checkout))]
    settings = shared_settings(install, connections, config) if install.data_host is not None else None
    if settings is not None:  # copied into a folder of mode 700: no other account ever reads it
        steps.append(("settings", f"cd {root} && rm -rf etc/.incoming && mkdir -m 700 etc/.incoming"))
    steps.append(("init", f"cd {root} && bin/deploytool {shlex.join(init)}"))
    steps.append(("user part", f"cd {root} && bin/deploytool install --part user --skip-migrate"))
    print(f"fleet: {host.name} ({host.where}): preparing it (checkout, init, the user part)", flush=True)
    started = time.monotonic()
    out, err = Prefixed(sys.stdout, f"[{host.name}] "), Prefixed(sys.stderr, f"[{host.name}] ")
    try:
        for name, command in steps:
            result = connection.run(command, warn=True, hide=False, out_stream=out, err_stream=err, in_stream=False)
            if result.ok and settings is not None and name == "settings":
                connection.put(io.BytesIO(settings.encode()), f"{host.root}/etc/.incoming/settings_local.py")
                into_place = "chmod 600 etc/.incoming/settings_local.py && mv etc/.incoming/settings_local.py etc/"
                result = connection.run(f"cd {root} && {into_place} && rmdir etc/.incoming", warn=True, hide=True)
                out.write("copied the data host's etc/settings_local.py here (mode 600)\n")
            if not result.ok:
                outcome.result, outcome.detail = "not prepared", f"step {name!r} failed there (above)"
                return STOPPED
    finally:
        out.finish()
        err.finish()
        outcome.seconds = time.monotonic() - started
    outcome.after = remote_head(connection, host)
    nexts = [line.removeprefix("next: ") for line in out.lines if line.startswith("next: ")]
    outcome.result = "prepared"
    outcome.detail = f"{nexts[-1] if nexts else 'the system part, as root'}; then deploy --hosts {host.name}"
    return PREPARED


def upstream(install: Install) -> tuple[str, str]:
    """The repository URL and branch this checkout tracks: what a new host checks out."""
    git = ["git", "-C", str(install.root)]
    tracked = proc.attempt([*git, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"]).stdout.strip()
    remote, _, branch = tracked.partition("/")
    url = proc.attempt([*git, "remote", "get-url", remote]).stdout.strip() if branch else ""
    if not url:
        raise DeployError(
            f"{install.root} tracks no remote branch (git branch -u origin/main): a new host checks out the "
            "repository and branch this checkout tracks"
        )
    return url, branch


def shared_settings(install: Install, connections: dict[str, Connection], config: Any) -> str:
    """The data host's settings_local.py (one SECRET_KEY, database, cache and media store for
    the site), read over SSH: never this checkout's own, which may be a developer's."""
    data_host = install.data_host
    assert data_host is not None
    connection = connections.get(data_host.name) or connect(data_host, config)
    path = shlex.quote(f"{data_host.root}/etc/settings_local.py")
    try:
        read = connection.run(f"cat {path}", hide=True, warn=True, in_stream=False)
    finally:
        if data_host.name not in connections:
            connection.close()
    if not read.ok or "SECRET_KEY" not in read.stdout:
        why = read.stderr.strip() or "no SECRET_KEY in it"
        raise DeployError(f"{data_host.name}: cannot read {data_host.root}/etc/settings_local.py: {why}")
    return read.stdout


def in_order(hosts: list[Host]) -> list[Host]:
    """The fronts first, then the data host, then the others as given. A front's collectstatic
    adds the new revision's hashed static files beside the old ones (never --clear): while the
    app hosts move one by one, a page of either revision finds every file it names on the
    front. The data host migrates before any app host runs the new code (expand, then
    contract in a later release: the old code keeps working on the migrated database)."""
    return sorted(hosts, key=lambda host: 0 if "front" in host.roles else 1 if "data" in host.roles else 2)


def _short(revision: str) -> str:
    return revision[:12] if revision else "?"


def summary(outcomes: list[Outcome], revision: str | None) -> list[str]:
    """One line per host: what it runs now, what it ran before, and why it stopped."""
    width = max(len(outcome.host.name) for outcome in outcomes)
    lines = [f"fleet: summary ({_short(revision or '')}):"]
    for outcome in outcomes:
        now = outcome.after or outcome.before
        change = f"{_short(outcome.before)} -> {_short(now)}" if outcome.before != now else f"still {_short(now)}"
        line = f"  {outcome.host.name:<{width}}  {outcome.result:<15} {change}"
        if outcome.seconds:
            line += f"  {outcome.seconds:.1f} s"
        if outcome.detail:
            line += f"  ({outcome.detail})"
        lines.append(line)
    live = [outcome for outcome in outcomes if outcome.result == "live"]
    deployed = [outcome for outcome in outcomes if outcome.result != "prepared"]  # a new host runs nothing yet
    if live and len(live) < len(deployed):
        lines.append(
            "fleet: the fleet runs two revisions now. Fix the failure and run the same command again, or put "
            "the hosts above back: "
            + "; ".join(f"deploy {_short(o.before)} --hosts {o.host.name}" for o in live if o.before != o.after)
        )
    return lines
