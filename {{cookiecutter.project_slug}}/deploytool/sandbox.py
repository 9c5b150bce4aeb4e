"""`deploytool up|down|status`: this install's whole stack as the current user, on
loopback ports of its block, under a sandbox root (.sandbox/) that mirrors / .

`up` makes the checkout a sandbox install (env.conf: SYSTEM_ROOT=.sandbox), puts the
configs in place with the same code as a server install, makes a self-signed certificate
where no real one exists, then starts the dedicated database/cache copies, the app server
(under supervisord when that is the process manager; by bin/appctl.sh otherwise: systemd
cannot run without root) and nginx, and waits until the site answers over HTTPS.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import os
import pwd
import socket
import subprocess

from . import dedicated, proc
from .certificates import ensure_self_signed, issued, sandbox_ca
from .configcheck import nginx_valid
from .errors import DeployError
from .history import status_lines
from .init import make_links
from .install import put_in_place
from .layout import Install
from .nginx import Nginx
from .probe import site_get
from .progress import say, step
from .render import render
from .sockets import bind_refused

SANDBOX = ".sandbox"


# ---- the components ------------------------------------------------------------------------
class AppServer:
    """The app server, run as the process manager would run it."""

    name = "app server"

    def __init__(self, install: Install) -> None:
        self.install = install
        self.supervised = install.project.process_manager == "supervisor"
        self.supervisor_conf = install.supervisord_conf
        self.supervisor_pid = install.run_dir / "supervisord.pid"

    def ctl(self, command: str) -> subprocess.CompletedProcess[str]:
        return proc.attempt([self.install.ctl, command])

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return proc.attempt([proc.program("supervisorctl"), "-c", self.supervisor_conf, *args])

    def running(self) -> bool:
        return self.ctl("status").returncode == 0

    def start(self) -> None:
        if self.supervised:
            if not proc.pid_alive(self.supervisor_pid):
                proc.run([proc.program("supervisord"), "-c", self.supervisor_conf], "supervisord")
                self.wake_supervisord()
            else:
                self.supervisorctl("update")
                self.supervisorctl("start", self.install.service)
            proc.wait_until(self.running, f"{self.install.service} running under supervisord", 90)
        else:
            proc.run([self.install.ctl, "start"], "bin/appctl.sh start")

    def wake_supervisord(self) -> None:
        """supervisord starts its programs after its main loop's first poll, which waits up
        to 1 s for something on its sockets (supervisord.py, runforever): a connection to its
        socket ends that wait, and the app server starts a second sooner."""
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(self.install.supervisord_socket))
            except OSError:
                pass  # not listening (yet): it starts them within the second anyway

    def stop(self) -> None:
        if self.supervised and proc.pid_alive(self.supervisor_pid):
            self.supervisorctl("shutdown")  # stops the program gracefully, then itself
            proc.wait_until(lambda: not proc.pid_alive(self.supervisor_pid), "supervisord stopping", 60)
        if self.running():
            self.ctl("stop")


class Worker:
    """The background worker (worker=celery): bin/workerctl.sh, or the install's
    supervisord, which starts it with the app server."""

    name = "worker"

    def __init__(self, install: Install) -> None:
        self.install = install

    def running(self) -> bool:
        return proc.attempt([self.install.workerctl, "status"]).returncode == 0

    def start(self) -> None:
        if self.install.project.process_manager == "supervisor":
            proc.wait_until(self.running, f"{self.install.worker_service} running under supervisord", 90)
        else:
            proc.run([self.install.workerctl, "start"], "bin/workerctl.sh start", timeout=120)

    def stop(self) -> None:
        proc.run([self.install.workerctl, "stop"], "bin/workerctl.sh stop", timeout=360)


Component = dedicated.Server | AppServer | Worker | Nginx


def components(install: Install) -> list[Component]:
    """In start order; stopped in reverse. A host of the fleet that only holds the data runs
    its dedicated servers alone: no app server, no nginx; a front without the role app runs
    no app server (its nginx balances over the app hosts)."""
    if data_only(install):
        return [*dedicated.for_install(install)]
    if not install.serves_app:
        return [*dedicated.for_install(install), Nginx(install)]
    workers = [Worker(install)] if install.has_worker else []
    return [*dedicated.for_install(install), AppServer(install), *workers, Nginx(install)]


def data_only(install: Install) -> bool:
    return install.roles == ("data",)


# ---- the commands ----------------------------------------------------------------------------
def as_sandbox(current: Install) -> Install:
    """The checkout as a sandbox install; refuses a checkout installed on this server."""
    if current.sandbox:
        return current
    enabled = [current.site_enabled(name) for name in current.sites]
    if any(link.exists() or link.is_symlink() for link in enabled):
        raise DeployError(
            f"this checkout is installed on this server ({current.nginx_dir / 'sites-enabled'}): `up` runs a sandbox; "
            "use systemctl or bin/appctl.sh here, or clone the repo elsewhere to try it"
        )
    sandbox = dataclasses.replace(current, system_root=current.root / SANDBOX)
    render(sandbox)  # env.conf now names the sandbox: bin/appctl.sh follows it
    make_links(sandbox)
    return sandbox


def ports_free(install: Install) -> None:
    """Every port the stack binds must be ours already or free: never fight another program."""
    wanted = {
        "https": Nginx,
        "http": Nginx,
        "app": AppServer,
        "postgresql": dedicated.PostgreSQL,
        "redis": dedicated.Redis,
        "memcached": dedicated.Memcached,
        "media": dedicated.MediaStore,
    }
    running = {type(c) for c in components(install) if c.running()}
    chosen = {type(c) for c in components(install)}
    if install.app_on_socket:
        del wanted["app"]  # a unix socket: its port of the block stays reserved, unused
    for name in ("redis", "memcached"):
        if not (name == "redis" and install.shares_cache):
            del wanted[name]  # unix sockets too
    for name, owner in wanted.items():
        if owner in chosen and owner not in running and bind_refused("127.0.0.1", install.ports[name]):
            raise DeployError(
                f"port {install.ports[name]} ({name} of the {install.install_type} install) is taken by "
                "another program: stop it, or move the project's block (port_block_start); nothing was started"
            )


def up(current: Install) -> Install:
    me = pwd.getpwuid(os.geteuid()).pw_name
    if me != current.project.user:
        raise DeployError(
            f"`up` runs the stack as the project user {current.project.user!r}, not as {me!r}: "
            f"runuser -u {current.project.user} -- {current.deploytool} up"
            + (" (never as root)" if os.geteuid() == 0 else "")
        )
    # Everything the stack creates (logs, the database, uploads, sockets) is closed to other
    # local accounts; the servers started below inherit this.
    os.umask(0o027)
    with step("up", "rendering the configs, checking ports and nginx -t"):
        sandbox = as_sandbox(current)
        sandbox.system("/run").mkdir(parents=True, exist_ok=True)  # nginx's pid file (nginx -t wants it)
        for pid in Nginx(sandbox).stop_orphans():
            say("up", f"stopped nginx worker {pid}, left holding the ports by a master that was killed")
        ports_free(sandbox)
        nginx_valid(sandbox)  # a broken site never replaces the one nginx serves
    if ensure_self_signed(sandbox):
        say("up", f"made a self-signed certificate for {', '.join(sandbox.server_names)} (sandbox CA)")
    with step("up", "putting the configs in place under .sandbox/"):
        put_in_place(sandbox, "system")
    for service in dedicated.for_install(sandbox):  # migrate needs the database
        with step("up", f"starting {service.name}"):
            service.start()
    first = not sandbox.python.exists()
    with step("up", "venv, requirements, migrate, collectstatic" + (" (a first run takes minutes)" if first else "")):
        put_in_place(sandbox, "user")
    if data_only(sandbox):
        return sandbox  # the database runs and is migrated: the app hosts' `up` comes next
    if sandbox.serves_app:
        with step("up", f"starting the app server ({sandbox.project.app_server})"):
            AppServer(sandbox).start()
    if sandbox.has_worker and sandbox.serves_app:
        with step("up", "starting the background worker (Celery)"):
            Worker(sandbox).start()
    with step("up", "starting nginx and waiting for /health/ over HTTPS"):
        Nginx(sandbox).start()
        wait_until_served(sandbox)
    return sandbox


def wait_until_served(install: Install, timeout: float = 30.0) -> None:
    """/health/ answers 200 over HTTPS, with the trust the site's certificate was issued
    under (the sandbox CA, or exactly the certificate certbot issued)."""
    last = ""

    def healthy() -> bool:
        nonlocal last
        try:
            status, _ = site_get(install, "/health/")
        except (OSError, http.client.HTTPException) as error:
            last = str(error) or type(error).__name__
            return False
        last = f"HTTP {status}"
        return status == 200

    if not proc.poll(healthy, timeout, interval=0.2):
        raise DeployError(f"{install.url}health/ did not answer 200 within {timeout:.0f} s ({last}); see logs/")


def down(install: Install) -> list[str]:
    """Stop the sandbox stack `up` started. Refused on anything else: a server install's
    servers belong to its process manager, and the system nginx serves other sites too."""
    if os.geteuid() == 0:
        raise DeployError(
            f"`down` stops the sandbox stack of {install.project.user!r} and never runs as root: "
            f"runuser -u {install.project.user} -- {install.deploytool} down"
        )
    if not install.own_sandbox:
        raise DeployError(
            f"this is a server install (SYSTEM_ROOT={install.system_root_setting}), not a sandbox: `down` "
            f"stops only what `up` started; stop the app server with `{install.by_hand('stop')}` (nginx serves "
            "other sites too and stays); nothing was stopped"
        )
    stopped = []
    for component in reversed(components(install)):
        if component.running():
            component.stop()
            stopped.append(component.name)
    orphans = Nginx(install).stop_orphans()
    if orphans:
        stopped.append(f"nginx workers {', '.join(map(str, orphans))} (their master had been killed)")
    return stopped


def status(install: Install) -> tuple[int, list[str]]:
    """LSB-like: 0 all running, 3 all stopped, 1 some running."""
    states = [(c.name, c.running()) for c in components(install)]
    lines = [f"{name:<11} {'running' if up_ else 'stopped'}" for name, up_ in states]
    orphans = Nginx(install).orphans() if install.own_sandbox else []
    if orphans:
        lines.append(
            f"{'':<11} but nginx workers {', '.join(map(str, orphans))} still hold its ports (their master was "
            "killed): `down` stops them, `up` replaces them"
        )
    lines += status_lines(install)  # the live revision and since when, the template version
    ups = [up_ for _, up_ in states]
    return (0 if all(ups) else 3 if not any(ups) else 1), lines


def run_up(args: argparse.Namespace) -> int:
    install = up(Install.load(args.root))
    print(f"up: {install.url}  (the {install.install_type} install, as {install.project.user})")
    print(f"    next: {install.deploytool} status; down stops it all")
    resolve = f"--resolve {install.site}:{install.https_port}:127.0.0.1 {install.url}"
    if issued(install):
        print(f"    serving the certificate certbot issued ({install.cert_dir}); curl {resolve}")
    else:
        print(f"    trust {sandbox_ca(install)}; curl --cacert it {resolve}")
    return 0


def run_down(args: argparse.Namespace) -> int:
    stopped = down(Install.load(args.root))
    print("down: stopped " + (", ".join(stopped) if stopped else "nothing (nothing was running)"))
    return 0


def run_status(args: argparse.Namespace) -> int:
    code, lines = status(Install.load(args.root))
    print("\n".join(lines))
    return code
