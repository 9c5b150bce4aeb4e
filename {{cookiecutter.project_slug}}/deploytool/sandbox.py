"""`deploytool up|down|status`: this install's whole stack as the current user, on
loopback ports of its block, under a sandbox root (.sandbox/) that mirrors / .

`up` makes the checkout a sandbox install (env.conf: SYSTEM_ROOT=.sandbox), puts the
configs in place with the same code as a server install, makes a self-signed certificate
where no real one exists, then starts the dedicated database/cache copies, the app server
(under supervisord when that is the process manager; by bin/uwsgictl.sh otherwise: systemd
cannot run without root) and nginx, and waits until the site answers over HTTPS.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import pwd
import socket
import subprocess
import time

from . import services
from .certs import ensure_self_signed, issued, sandbox_ca
from .check import nginx_valid
from .deploy import status_lines
from .errors import DeployError
from .init import make_links
from .install import install
from .layout import Install
from .probe import first_certificate, https_get, served_certificate
from .render import render

SANDBOX = ".sandbox"


# ---- the components ------------------------------------------------------------------------
class Nginx:
    name = "nginx"

    def __init__(self, install: Install) -> None:
        self.install = install
        self.pidfile = install.system("/run/nginx.pid")

    def argv(self, *args: str) -> list[str]:
        main = self.install.nginx_dir / "nginx.conf"
        error_log = self.install.log_dir / "nginx.error.log"
        return [services.program("nginx"), "-c", str(main), "-e", str(error_log), *args]

    def running(self) -> bool:
        return services.pid_alive(self.pidfile)

    def test(self) -> None:
        proc = subprocess.run(self.argv("-t", "-q"), capture_output=True, text=True)
        if proc.returncode != 0:
            raise DeployError(f"nginx -t failed, nginx keeps its previous config: {proc.stderr.strip()}")

    def start(self) -> None:
        self.test()
        if self.running():
            subprocess.run(self.argv("-s", "reload"), check=True, capture_output=True)
            return
        proc = subprocess.run(self.argv(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise DeployError(f"nginx did not start: {proc.stderr.strip()}")
        services.wait_for(self.running, "nginx writing its pid file")

    def stop(self) -> None:
        if self.running():
            subprocess.run(self.argv("-s", "quit"), capture_output=True)
            services.wait_for(lambda: not self.running(), "nginx stopping")


class AppServer:
    """The app server, run as the process manager would run it."""

    name = "app server"

    def __init__(self, install: Install) -> None:
        self.install = install
        self.supervised = install.project.process_manager == "supervisor"
        self.supervisor_conf = install.nginx_dir.parent / "supervisor" / "supervisord.conf"
        self.supervisor_pid = install.run_dir / "supervisord.pid"

    def ctl(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.install.ctl), command], capture_output=True, text=True)

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [services.program("supervisorctl"), "-c", str(self.supervisor_conf), *args]
        return subprocess.run(argv, capture_output=True, text=True)

    def running(self) -> bool:
        return self.ctl("status").returncode == 0

    def start(self) -> None:
        if self.supervised:
            if not services.pid_alive(self.supervisor_pid):
                _checked([services.program("supervisord"), "-c", str(self.supervisor_conf)], "supervisord")
            else:
                self.supervisorctl("update")
                self.supervisorctl("start", self.install.service)
            services.wait_for(self.running, f"{self.install.service} running under supervisord", 90)
        else:
            proc = self.ctl("start")
            if proc.returncode != 0:
                raise DeployError(f"bin/uwsgictl.sh start failed: {(proc.stderr or proc.stdout).strip()}")

    def stop(self) -> None:
        if self.supervised and services.pid_alive(self.supervisor_pid):
            self.supervisorctl("shutdown")  # stops the program gracefully, then itself
            services.wait_for(lambda: not services.pid_alive(self.supervisor_pid), "supervisord stopping", 60)
        if self.running():
            self.ctl("stop")


def components(install: Install) -> list[services.PostgreSQL | services.Redis | services.Memcached | AppServer | Nginx]:
    """In start order; stopped in reverse."""
    return [*services.for_install(install), AppServer(install), Nginx(install)]


# ---- the commands ----------------------------------------------------------------------------
def as_sandbox(current: Install) -> Install:
    """The checkout as a sandbox install; refuses a checkout installed on this server."""
    if current.sandbox:
        return current
    enabled = current.nginx_dir / "sites-enabled"
    if any(enabled.glob(f"{current.site}*.nginx.conf")):
        raise DeployError(
            f"this checkout is installed on this server ({enabled}): `up` runs a sandbox; "
            "use systemctl or bin/uwsgictl.sh here, or clone the repo elsewhere to try it"
        )
    sandbox = dataclasses.replace(current, system_root=current.root / SANDBOX)
    render(sandbox)  # env.conf now names the sandbox: bin/uwsgictl.sh follows it
    make_links(sandbox)
    return sandbox


def ports_free(install: Install) -> None:
    """Every port the stack binds must be ours already or free: never fight another program."""
    wanted = {
        "https": Nginx,
        "http": Nginx,
        "app": AppServer,
        "postgresql": services.PostgreSQL,
        "redis": services.Redis,
        "memcached": services.Memcached,
    }
    running = {type(c) for c in components(install) if c.running()}
    chosen = {type(c) for c in components(install)}
    if install.app_on_socket:
        del wanted["app"]  # a unix socket: its port of the block stays reserved, unused
    for name in ("redis", "memcached"):
        del wanted[name]  # unix sockets too
    for name, owner in wanted.items():
        if owner in chosen and owner not in running and not _free(install.ports[name]):
            raise DeployError(
                f"port {install.ports[name]} ({name} of the {install.install_type} install) is taken by "
                "another program: stop it, or move the project's block (port_block_start); nothing was started"
            )


def url(install: Install) -> str:
    return f"https://{install.site}:{install.ports['https']}/"


def up(current: Install) -> Install:
    me = pwd.getpwuid(os.geteuid()).pw_name
    if me != current.project.user:
        raise DeployError(
            f"`up` runs the stack as the project user {current.project.user!r}, not as {me!r}: "
            f"runuser -u {current.project.user} -- {current.python} -m deploytool up"
            + (" (never as root)" if os.geteuid() == 0 else "")
        )
    # Everything the stack creates (logs, the database, uploads, sockets) is closed to other
    # local accounts; the servers started below inherit this.
    os.umask(0o027)
    sandbox = as_sandbox(current)
    sandbox.system("/run").mkdir(parents=True, exist_ok=True)  # nginx's pid file (nginx -t wants it)
    ports_free(sandbox)
    nginx_valid(sandbox)  # a broken site never replaces the one nginx serves
    ensure_self_signed(sandbox)
    install(sandbox, "system")
    for service in services.for_install(sandbox):  # migrate needs the database
        service.start()
    install(sandbox, "user")
    AppServer(sandbox).start()
    Nginx(sandbox).start()
    wait_until_served(sandbox)
    return sandbox


def wait_until_served(install: Install, timeout: float = 30.0) -> None:
    """/health/ answers 200 over HTTPS: verified against the sandbox CA, or, once certbot
    has issued the site's certificate (from whatever CA), with exactly that certificate."""
    deadline = time.monotonic() + timeout
    last = ""
    real = issued(install)
    expected = first_certificate(install.cert_dir / "cert.pem") if real else None
    while time.monotonic() < deadline:
        try:
            if real and served_certificate(install, install.site) != expected:
                raise OSError(f"nginx does not serve {install.cert_dir / 'cert.pem'} yet")
            cafile = None if real else sandbox_ca(install)
            status, _, _ = https_get(install.site, install.ports["https"], "/health/", cafile, verify=not real)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as error:
            last = str(error)
        time.sleep(0.2)
    raise DeployError(f"{url(install)}health/ did not answer 200 within {timeout:.0f} s ({last}); see logs/")


def down(install: Install) -> list[str]:
    stopped = []
    for component in reversed(components(install)):
        if component.running():
            component.stop()
            stopped.append(component.name)
    return stopped


def status(install: Install) -> tuple[int, list[str]]:
    """LSB-like: 0 all running, 3 all stopped, 1 some running."""
    states = [(c.name, c.running()) for c in components(install)]
    lines = [f"{name:<11} {'running' if up_ else 'stopped'}" for name, up_ in states]
    lines += status_lines(install)  # the live revision and since when, the template version
    ups = [up_ for _, up_ in states]
    return (0 if all(ups) else 3 if not any(ups) else 1), lines


def _free(port: int) -> bool:
    with socket.socket() as probe:
        # As servers bind: connections of a stopped server lingering in TIME_WAIT do not
        # make the port taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _checked(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeployError(f"{what} failed: {(proc.stderr or proc.stdout).strip()}")
