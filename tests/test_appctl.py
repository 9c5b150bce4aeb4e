"""bin/appctl.sh (also reachable as bin/uwsgictl.sh) driven as its users drive it: by hand
as the project user, and by supervisor.

Each install is a real bake (Django, the rendered uwsgi.yaml / gunicorn.conf.py), made a
sandbox install with `deploytool init --system-root`, its app server run from the project
venv as the project user, on loopback ports of a block inside 60000-60049.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter
from support import GENERATED, TEMPLATE, poll_until, port_free, run, tool, wait_until
from support.probes import uwsgi_packet
from support.unitsandbox import as_the_unit, in_the_units_sandbox

CTL = GENERATED / "bin" / "appctl.sh"
COMMANDS = ["start", "stop", "restart", "reload", "status", "run"]
# Port blocks whose dev install (the block's first 10 ports: app +1, stats +2, supervisord
# +8) stays inside 60000-60049 and off the dev/stage/pro ports of block 60000, which other
# tests use. The first one free is taken.
BLOCKS = (60040, 60030)
APP_SERVERS = ["uwsgi", "gunicorn"]
HEALTH = "/health/"  # the project's health check: 200 when the app and its database answer
SLOW = "/__slow__"  # a path the tests' wrapper of the WSGI app answers after 2 seconds


def cwd_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def ppid_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rpartition(")")[2].split()[1])


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value.strip("'")
    return values


@dataclass
class Install:
    """A baked project, made a sandbox install, run by the project user."""

    root: Path
    user: str
    app_server: str

    @property
    def env(self) -> dict[str, str]:
        return read_env(self.root / "etc" / "env.conf")

    def ctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["runuser", "-u", self.user, "--", str(self.root / "bin" / "appctl.sh"), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert proc.returncode == 0, f"appctl.sh {' '.join(args)}: {proc.returncode}\n{proc.stdout}{proc.stderr}"
        return proc

    def processes(self) -> list[int]:
        """Every process working in this install root: the master and its workers."""
        root = str(self.root)
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and cwd_of(int(p)) == root]

    def masters(self) -> list[int]:
        procs = self.processes()
        return [pid for pid in procs if ppid_of(pid) not in procs]

    def master(self) -> int:
        masters = self.masters()
        assert len(masters) == 1, f"expected one {self.app_server} master in {self.root}, found {masters}"
        return masters[0]

    def workers(self) -> set[int]:
        master = self.master()
        return {pid for pid in self.processes() if ppid_of(pid) == master}

    def configured_workers(self) -> int:
        """The number of workers the rendered config asks for."""
        pattern = r"(?m)^  processes: (\d+)" if self.app_server == "uwsgi" else r"(?m)^workers = (\d+)"
        match = re.search(pattern, Path(self.env["APP_CONFIG"]).read_text())
        assert match, f"no worker count in {self.env['APP_CONFIG']}"
        return int(match.group(1))

    def all_workers(self) -> set[int]:
        """The workers, once all the configured ones have imported the app and serve (each logs
        it: uWSGI "WSGI app 0 ... ready ... pid: N", gunicorn "Worker ready (pid: N)")."""
        count, log = self.configured_workers(), Path(self.env["APP_LOG"])

        def ready() -> bool:
            ready = {int(pid) for pid in re.findall(r"ready.*pid: (\d+)", log.read_text())}
            return len(self.workers()) == count and self.workers() <= ready

        wait_until(ready, f"{count} workers that have imported the app")
        return self.workers()

    def request(self, path: str = HEALTH) -> int:
        """The HTTP status of a GET through the app server's own protocol (as nginx sends it)."""
        target, host = self.env["APP_SOCKET"], self.env["SITE"]
        if self.app_server == "gunicorn":
            conn = http.client.HTTPConnection("localhost", timeout=30)
            conn.sock = unix_connection(target)
            conn.request("GET", path, headers={"Host": host})
            status = conn.getresponse().status
            conn.close()
            return status
        return uwsgi_request(target, host, path)

    def answers(self) -> bool:
        """Does the app answer 200 yet? (Connection refused while it starts.)"""
        try:
            return self.request() == 200
        except OSError:
            return False

    def stop_everything(self) -> None:
        """Teardown: stop what the test left running, by pid, never by name."""
        self.ctl("stop")
        for pid in self.processes():
            os.kill(pid, signal.SIGKILL)


def unix_connection(path: str) -> socket.socket:
    """A connection to the app server's unix socket, as nginx makes it."""
    conn = socket.socket(socket.AF_UNIX)
    conn.settimeout(30)
    conn.connect(path)
    return conn


def uwsgi_request(target: str, host: str, path: str) -> int:
    """A GET in the uwsgi protocol, as nginx's uwsgi_pass sends it."""
    variables = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": host,
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "REMOTE_ADDR": "127.0.0.1",
    }
    with unix_connection(target) as conn:
        conn.sendall(uwsgi_packet(variables))
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    assert match, f"no HTTP status line from uWSGI: {data[:200]!r}"
    return int(match.group(1))


@pytest.fixture
def make_install(project_user: str, project_venv: Path) -> Iterator[Callable[..., Install]]:
    """make_install(app_server, process_manager) -> a sandbox install, cleaned up after."""
    made: list[tuple[Install, Path]] = []

    def make(app_server: str, process_manager: str = "systemd", parent: str | None = None) -> Install:
        block = next((b for b in BLOCKS if all(port_free(b + offset) for offset in (1, 2, 8))), None)
        assert block, f"the app, stats and supervisord ports of blocks {BLOCKS} are all in use (ss -ltnp)"
        # Outside pytest's 0700 temp folder: the project user must reach the install.
        base = Path(tempfile.mkdtemp(prefix="appctl-", dir=parent))
        base.chmod(0o755)
        answers = {
            "user": project_user,
            "port_block_start": block,
            "install_type": "dev",
            "app_server": app_server,
            "process_manager": process_manager,
        }
        root = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(base), extra_context=answers))
        system_root = base / "system"
        init = [sys.executable, "-m", "deploytool", "init", "--install-type", "dev", "--system-root", system_root]
        run(init, cwd=root)
        env = read_env(root / "etc" / "env.conf")
        (root / env["VENV"]).symlink_to(project_venv)
        for folder in (
            env["LOG_DIR"],
            env["RUN_DIR"],
            env["SOCKET_DIR"],
        ):  # what `deploytool install` and tmpfiles.d make
            Path(folder).mkdir(parents=True, exist_ok=True)
        # A slow path in front of Django, to have a request in flight during a stop.
        wsgi = root / root.name / "wsgi.py"  # the project dir is named after the package
        wsgi.write_text(
            wsgi.read_text()
            + "\n\nimport time  # noqa: E402\n\n_django = application\n\n\n"
            + "def application(environ, start_response):  # noqa: F811\n"
            + f"    if environ.get('PATH_INFO') == {SLOW!r}:\n        time.sleep(2)\n"
            + "    return _django(environ, start_response)\n"
        )
        run(["chown", "-R", f"{project_user}:{project_user}", base])
        install = Install(root, project_user, app_server)
        made.append((install, base))
        return install

    yield make
    for install, base in made:
        install.stop_everything()
        shutil.rmtree(base, ignore_errors=True)


# ---- without an install --------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["bogus"]])
def test_usage_lists_the_commands(args: list[str]) -> None:
    proc = subprocess.run([str(CTL), *args], capture_output=True, text=True)
    assert proc.returncode == 2, proc
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", proc.stderr, re.M), f"usage lacks {command}:\n{proc.stderr}"


def test_help_exits_0() -> None:
    proc = subprocess.run([str(CTL), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "start" in proc.stdout, proc


def test_shellcheck_clean() -> None:
    run([tool("shellcheck"), "-x", CTL, GENERATED / "bin" / "uwsgictl.sh"])


def test_cookiecutter_copies_the_script_verbatim() -> None:
    """The script goes through cookiecutter's Jinja: it must hold nothing Jinja reads."""
    text = CTL.read_text()
    for marker in ("{{", "{%", "{#"):
        assert marker not in text, f"{CTL} contains {marker!r}: cookiecutter would render it"


@pytest.mark.usefixtures("as_root")
def test_refuses_root_and_names_the_user(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "etc").mkdir()
    for name in ("appctl.sh", "ctl-common.sh"):  # the script and what it sources
        shutil.copy2(GENERATED / "bin" / name, tmp_path / "bin")
    marker = tmp_path / "sourced"
    # A line only sourcing would run: as root the file must be read, never run.
    (tmp_path / "etc" / "env.conf").write_text(f"PROJECT_USER=someone\ntouch {marker}\n")
    proc = subprocess.run([str(tmp_path / "bin" / "appctl.sh"), "start"], capture_output=True, text=True)
    assert proc.returncode == 1, proc
    assert "root" in proc.stderr and "runuser -u someone --" in proc.stderr, proc.stderr
    assert not marker.exists(), "env.conf was sourced as root"


@pytest.mark.usefixtures("as_root")
def test_the_old_name_still_works(tmp_path: Path) -> None:
    """bin/uwsgictl.sh, the script's first name, runs bin/appctl.sh with the same arguments."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "etc").mkdir()
    for name in ("appctl.sh", "ctl-common.sh", "uwsgictl.sh"):
        shutil.copy2(GENERATED / "bin" / name, tmp_path / "bin")
    (tmp_path / "etc" / "env.conf").write_text("PROJECT_USER=someone\n")
    old = subprocess.run([str(tmp_path / "bin" / "uwsgictl.sh"), "status"], capture_output=True, text=True)
    new = subprocess.run([str(tmp_path / "bin" / "appctl.sh"), "status"], capture_output=True, text=True)
    assert (old.returncode, old.stderr) == (new.returncode, new.stderr) and "runuser -u someone" in old.stderr, old


@pytest.mark.usefixtures("as_root")
def test_missing_env_conf_says_how_to_make_it(project_user: str) -> None:
    base = Path(tempfile.mkdtemp(prefix="appctl-"))
    try:
        base.chmod(0o755)
        (base / "bin").mkdir()
        for name in ("appctl.sh", "ctl-common.sh"):
            shutil.copy2(GENERATED / "bin" / name, base / "bin")
        proc = subprocess.run(
            ["runuser", "-u", project_user, "--", str(base / "bin" / "appctl.sh"), "status"],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1, proc
        assert "env.conf is missing" in proc.stderr and "deploytool init --install-type" in proc.stderr, proc.stderr
    finally:
        shutil.rmtree(base)


# ---- by hand, as the project user ------------------------------------------------------


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("app_server", APP_SERVERS)
def test_start_status_reload_stop(make_install: Callable[..., Install], app_server: str) -> None:
    install = make_install(app_server)
    assert install.ctl("status").returncode == 3

    started = install.ctl("start", check=True)
    assert "started" in started.stdout
    master = install.master()
    assert Path(install.env["PIDFILE"]).read_text().strip() == str(master)
    status = install.ctl("status")
    assert status.returncode == 0 and f"pid {master}" in status.stdout, status
    assert install.request() == 200

    again = install.ctl("start", check=True)  # a double start is a no-op: still one instance
    assert "already running" in again.stdout
    assert install.masters() == [master]

    old_workers = install.all_workers()
    reloaded = install.ctl("reload", check=True)
    assert "reloaded" in reloaded.stdout
    assert install.master() == master, "a reload keeps the master (the manager's main pid)"
    assert not old_workers & install.workers(), "every worker was replaced"
    assert install.request() == 200

    stopped = install.ctl("stop", check=True)
    assert "stopped" in stopped.stdout
    assert install.processes() == []
    assert install.ctl("status").returncode == 3
    again = install.ctl("stop", check=True)  # stopping a stopped server is a no-op
    assert "not running" in again.stdout
    assert install.ctl("reload").returncode == 7  # LSB: program is not running


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("app_server", APP_SERVERS)
def test_status_after_a_crash_and_start_again(make_install: Callable[..., Install], app_server: str) -> None:
    install = make_install(app_server)
    install.ctl("start", check=True)
    install.all_workers()  # every worker serving: none ends on its own for a failed import
    os.kill(install.master(), signal.SIGKILL)
    # The workers follow at once (gunicorn's sync workers by the signal post_fork asks the
    # kernel for; on their own they would look up only after timeout / 2, 30 s).
    wait_until(lambda: install.processes() == [], "the workers to follow their master", timeout=5)
    status = install.ctl("status")
    assert status.returncode == 1 and "pid file" in status.stdout, status  # LSB: dead, pid file left
    install.ctl("start", check=True)
    assert install.ctl("status").returncode == 0 and install.request() == 200


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("app_server", APP_SERVERS)
def test_stop_lets_a_request_in_flight_finish(make_install: Callable[..., Install], app_server: str) -> None:
    install = make_install(app_server)
    install.ctl("start", check=True)
    statuses: list[int] = []
    client = threading.Thread(target=lambda: statuses.append(install.request(SLOW)))
    client.start()
    time.sleep(0.7)  # the request is in the app's 2 s sleep
    install.ctl("stop", check=True)
    client.join(30)
    assert statuses == [404], "the request in flight got its (Django 404) answer before the stop"
    assert install.processes() == []


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("app_server", APP_SERVERS)
def test_reload_refuses_code_that_does_not_import(make_install: Callable[..., Install], app_server: str) -> None:
    install = make_install(app_server)
    install.ctl("start", check=True)
    master, workers = install.master(), install.all_workers()
    wsgi = next(install.root.glob("*/wsgi.py"))
    wsgi.write_text(wsgi.read_text() + "\nraise ImportError('a broken deploy')\n")
    proc = install.ctl("reload")
    assert proc.returncode == 1 and "does not import" in proc.stderr and "a broken deploy" in proc.stderr, proc
    assert install.master() == master and install.workers() == workers, "the running code was left alone"
    assert install.request() == 200


@pytest.mark.usefixtures("as_root")
def test_uwsgi_reload_rereads_a_changed_config(make_install: Callable[..., Install]) -> None:
    install = make_install("uwsgi")
    install.ctl("start", check=True)
    assert len(install.all_workers()) == install.configured_workers() > 2
    config = Path(install.env["APP_CONFIG"])
    config.write_text(re.sub(r"(?m)^  processes: \d+", "  processes: 2", config.read_text()))
    proc = install.ctl("reload", check=True)
    assert "re-read" in proc.stdout, proc.stdout
    wait_until(lambda: len(install.workers()) == 2, "2 uWSGI workers after the reload")
    assert install.request() == 200
    chain = install.ctl("reload", check=True)  # unchanged config: one worker at a time
    assert "chain reload" in chain.stdout, chain.stdout


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("app_server", APP_SERVERS)
def test_logrotate_makes_the_server_reopen_its_log(make_install: Callable[..., Install], app_server: str) -> None:
    install = make_install(app_server)
    install.ctl("start", check=True)
    log = Path(install.env["APP_LOG"] if app_server == "uwsgi" else install.env["LOG_DIR"] + "/gunicorn.access.log")
    assert install.request("/missing-before") == 404  # both app servers log 4xx and 5xx requests
    wait_until(lambda: "missing-before" in log.read_text(), f"a line in {log}")
    if app_server == "uwsgi":  # uWSGI compares whole-second mtimes: touch it a second later
        reopen = Path(install.env["LOGREOPEN"])
        wait_until(lambda: time.time() >= int(reopen.stat().st_mtime) + 1.1, "a new second")
    # As deploytool install puts it: owned by root (logrotate ignores other owners' files).
    conf = install.root.parent / "logrotate.conf"
    shutil.copyfile(install.root / "etc" / "logrotate.d" / install.env["SITE"], conf)
    rotate = run([tool("logrotate"), "-s", install.root.parent / "logrotate.state", "-f", conf])
    assert "error" not in rotate.stderr, rotate.stderr
    rotated = log.with_name(log.name + ".1")
    assert rotated.exists(), f"{log} was not rotated"

    def logs_to_new_file() -> bool:  # the server reopens its log a moment after postrotate
        install.request("/missing-after")
        return log.exists() and "missing-after" in log.read_text()

    if not poll_until(logs_to_new_file, "the new log", 10):
        tails = {path.name: path.read_text()[-600:] for path in sorted(log.parent.iterdir())}
        pytest.fail(f"the server did not write to the new {log} after the rotation: {tails}")
    assert log.stat().st_mode & 0o777 == 0o640


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("app_server", APP_SERVERS)
def test_run_tells_systemd_it_is_ready_and_stops_cleanly(make_install: Callable[..., Install], app_server: str) -> None:
    """Type=notify: READY=1 comes from the process systemd started (`run` execs the server).
    ExecStop (`appctl.sh stop`), even right after READY=1, ends it with status 0: a
    clean stop for Restart=on-failure."""
    install = make_install(app_server)
    folder = Path(tempfile.mkdtemp(prefix="appctl-notify-"))
    ctl = str(install.root / "bin" / "appctl.sh")
    # setpriv execs (like systemd's User=): the pid stays the one systemd watches.
    as_user = [tool("setpriv"), f"--reuid={install.user}", f"--regid={install.user}", "--init-groups"]
    try:
        folder.chmod(0o755)
        path = str(folder / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(path)
            os.chmod(path, 0o777)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            listener.settimeout(30)
            env = {**os.environ, "NOTIFY_SOCKET": path, "INVOCATION_ID": "0" * 32}
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            server = subprocess.Popen([*as_user, ctl, "run"], env=env, **quiet)
            try:
                while True:
                    message, ancillary, _, _ = listener.recvmsg(4096, socket.CMSG_SPACE(12))
                    if b"READY=1" in message:
                        break
                creds = [data for _, kind, data in ancillary if kind == socket.SCM_CREDENTIALS]
                sender = struct.unpack("3i", creds[0])[0]
                assert sender == server.pid, f"READY=1 came from pid {sender}, not the main pid {server.pid}"
                stop = subprocess.run([*as_user, ctl, "stop"], capture_output=True, text=True, timeout=120)
                assert stop.returncode == 0, stop
                assert server.wait(60) == 0
            finally:
                if server.poll() is None:
                    server.kill()
                    server.wait()
    finally:
        shutil.rmtree(folder)


# ---- with the process managers ---------------------------------------------------------


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("app_server", APP_SERVERS)
def test_supervisor_and_manual_use_agree(make_install: Callable[..., Install], app_server: str) -> None:
    """Seed 000 §6.1: a stop by hand is a normal stop for the manager (not undone), a crash
    is restarted, and a hand-started server is taken over by the manager's next start."""
    install = make_install(app_server, "supervisor")
    service = install.env["SERVICE"]
    folder = install.root.parent
    conf = folder / "supervisord.conf"
    port = install.env["PORT_SUPERVISOR"]
    conf.write_text(
        f"[supervisord]\nnodaemon=true\nlogfile={folder}/supervisord.log\npidfile={folder}/supervisord.pid\n"
        f"childlogdir={folder}\n[inet_http_server]\nport=127.0.0.1:{port}\n"
        f"[supervisorctl]\nserverurl=http://127.0.0.1:{port}\n"
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[include]\nfiles={install.root}/etc/supervisor/{service}.conf\n"
    )
    ctl = [tool("supervisorctl"), "-c", str(conf)]

    def state() -> tuple[str, int]:
        out = subprocess.run([*ctl, "status", service], capture_output=True, text=True).stdout.split()
        pid = int(out[3].rstrip(",")) if len(out) > 3 and out[1] == "RUNNING" else 0
        return (out[1] if len(out) > 1 else "?"), pid

    def running(other_than: int = 0) -> int:
        return wait_until(lambda: (s := state())[0] == "RUNNING" and s[1] != other_than and s[1], f"{service} RUNNING")

    supervisord = subprocess.Popen([tool("supervisord"), "-c", str(conf)])
    try:
        pid = running()
        assert install.master() == pid and install.request() == 200

        install.ctl("stop", check=True)  # by hand: a normal stop, left stopped
        wait_until(lambda: state()[0] == "EXITED", "supervisor to see the exit", 15)
        time.sleep(3)
        assert state()[0] == "EXITED" and install.processes() == [], "supervisor undid a stop by hand"

        install.ctl("start", check=True)  # by hand, outside supervisor
        by_hand = install.master()
        run([*ctl, "start", service])  # the manager takes over: one instance, its own
        pid = running(other_than=by_hand)
        assert install.masters() == [pid] and install.request() == 200

        os.kill(pid, signal.SIGKILL)  # a crash is restarted
        pid = running(other_than=pid)
        assert install.masters() == [pid] and install.request() == 200
    finally:
        supervisord.terminate()  # supervisord stops the program (stopsignal) on its way out
        supervisord.wait(90)


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("app_server", APP_SERVERS)
def test_systemd_unit_verifies_and_is_sandboxed(make_install: Callable[..., Install], app_server: str) -> None:
    install = make_install(app_server, "systemd")
    unit = install.root / "etc/systemd/system" / f"{install.env['SERVICE']}.service"
    analyze = tool("systemd-analyze")
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    # verify exits 0 on most warnings and prints them: any output is a failure.
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run([analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert match, security.stdout + security.stderr
    assert float(match.group(1)) <= 2.0, security.stdout
    text = unit.read_text()
    assert f"ExecStart=/bin/bash {install.root}/bin/appctl.sh run" in text
    assert f"User={install.user}" in text and "Restart=on-failure" in text
    assert ("KillSignal=SIGINT" if app_server == "uwsgi" else "KillSignal=SIGTERM") in text


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("app_server", APP_SERVERS)
def test_app_server_runs_in_the_units_sandbox(
    make_install: Callable[..., Install], project_venv: Path, app_server: str
) -> None:
    """ExecStart, ExecReload and ExecStop under the unit's hardening, rebuilt by hand: a mount
    namespace (ProtectSystem=strict, ProtectHome=read-only, ReadWritePaths=, PrivateTmp,
    PrivateDevices, ProtectKernelTunables, ProtectProc=invisible), setpriv (User=,
    NoNewPrivileges, empty CapabilityBoundingSet) and a seccomp filter (SystemCallFilter=,
    RestrictAddressFamilies=). The app must serve, reload and stop with status 0."""
    probe = subprocess.run(["/usr/bin/python3", "-c", "import seccomp"], capture_output=True, text=True)
    assert probe.returncode == 0, "python3-seccomp is missing: apt-get install python3-seccomp"
    # Under /home, like a real install: PrivateTmp hides /tmp.
    install = make_install(app_server, "systemd", parent="/home")
    unit = install.root / "etc/systemd/system" / f"{install.env['SERVICE']}.service"
    loader = install.root.parent / "seccomp_exec.py"
    as_unit = as_the_unit(install.user, loader, str(install.root / "bin/appctl.sh"), unit=unit)
    start = in_the_units_sandbox(unit, project_venv, [*as_unit, "run"])
    server = subprocess.Popen(start, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        served = wait_until(lambda: server.poll() is not None or install.answers(), "the app to answer", 60)
        if server.poll() is not None or not served:
            log = Path(install.env["APP_LOG"])
            said = log.read_text()[-3000:] if log.exists() else ""
            raise AssertionError(f"the server exited: {server.stderr.read() if server.stderr else ''}\n{said}")
        assert install.master() == server.pid
        # ExecReload and ExecStop run in the service's namespace, under the same restrictions.
        enter = [tool("nsenter"), "--mount", f"--target={server.pid}", "--", *as_unit]
        reload = subprocess.run([*enter, "reload"], capture_output=True, text=True, timeout=120)
        assert reload.returncode == 0, reload
        assert install.request() == 200 and install.master() == server.pid
        denied = subprocess.run([*enter[:-1], "/usr/bin/touch", str(install.root / "written")], capture_output=True)
        assert denied.returncode != 0, "the install root is writable: ProtectHome=read-only is not emulated"
        stop = subprocess.run([*enter, "stop"], capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, stop
        assert server.wait(60) == 0
        log = Path(install.env["APP_LOG"]).read_text()
        assert "Operation not permitted" not in log and "Read-only file system" not in log, log[-2000:]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
