"""A server install, step by step (`deploytool install --root DIR`), the systemd unit, the
tmpfiles.d line, and bad situations that must leave the previous state working."""

from __future__ import annotations

import configparser
import grp
import json
import os
import pwd
import re
import shlex
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import BLOCKS, Stack, bake_for_user, root_copy, run, running_stack, tool, wait_until
from support import GENERATED as TEMPLATE_GENERATED
from support.unitsandbox import as_the_unit, in_the_units_sandbox

BLOCK = BLOCKS["install"]


@pytest.fixture
def baked(project_user: str, project_venv: Path) -> Iterator[Stack]:
    """A baked project (a server install: system root /, with Redis and a Celery worker), not running."""
    project = bake_for_user(
        project_user, project_venv, port_block_start=BLOCK, install_type="pro", cache="redis", worker="celery"
    )
    yield Stack(project, project_user)
    run(["rm", "-rf", project.parent])


def owner(path: Path) -> str:
    return pwd.getpwuid(path.lstat().st_uid).pw_name


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# ---- install --root DIR ----------------------------------------------------------------------


def test_install_into_an_empty_root_then_again_changes_nothing(baked: Stack) -> None:
    root = baked.project.parent / "system"  # where the project user can look, as under /
    root.mkdir()
    first = baked.system_part(root)
    # the system part ends with what comes next: the user part, which migrates first
    assert (
        f"next: as {baked.user}, in {baked.project}: {baked.project}/bin/deploytool install --part user" in first.stdout
    )
    site, service, user = baked.site, baked.env["SERVICE"], baked.user
    answers = baked.answers
    where = f"{user}/{answers['domain']}/pro"
    expected_files = {
        f"etc/nginx/sites-available/{site}.nginx.conf": ("root", 0o644),
        f"etc/nginx/sites-available/{site}_letsencrypt.nginx.conf": ("root", 0o644),
        "etc/nginx/snippets/acme.conf": ("root", 0o644),
        f"etc/nginx/htpasswd/{site}": ("www-data", 0o600),
        f"etc/letsencrypt/{site}.ini": ("root", 0o644),
        f"etc/letsencrypt/renewal-hooks/deploy/{site}.sh": ("root", 0o755),
        f"etc/systemd/system/{service}.service": ("root", 0o644),
        f"etc/logrotate.d/{site}": ("root", 0o644),
        f"etc/tmpfiles.d/{site}.conf": ("root", 0o644),
    }
    for name, (who, bits) in expected_files.items():
        path = root / name
        assert path.is_file() and not path.is_symlink(), name
        assert (owner(path), mode(path)) == (who, bits), name
    # No certificate yet: the bootstrap site is the one enabled (seed 000 §3.1).
    enabled = root / "etc/nginx/sites-enabled"
    assert sorted(p.name for p in enabled.iterdir()) == [f"{site}_letsencrypt.nginx.conf"]
    bootstrap = f"{site}_letsencrypt.nginx.conf"
    assert os.readlink(enabled / bootstrap) == f"../sites-available/{bootstrap}"
    for folder in (f"var/log/{where}", f"var/backups/{where}", f"run/{site}"):
        assert (owner(root / folder), mode(root / folder)) == (user, 0o750), folder
    assert (root / "var/www/letsencrypt").is_dir()
    # The links in the install point into the new root (made by the user's init).
    assert os.readlink(baked.project / "logs") == str(root / f"var/log/{where}")
    # nginx's group may pass through the checkout, read static/ and media/ and look for the
    # maintenance flag, nothing else.
    folders = {".": 0o710, "static": 0o2750, "media": 0o2750, "maintenance": 0o2750, "data": 0o700, "etc": 0o700}
    for folder, bits in folders.items():
        path = baked.project / folder
        group = "www-data" if bits & 0o070 else baked.user
        assert (owner(path), mode(path)) == (baked.user, bits), folder
        assert grp.getgrgid(path.stat().st_gid).gr_name == group or not bits & 0o070, folder
    socket_dir = root / f"run/{site}.app"
    assert (owner(socket_dir), mode(socket_dir), grp.getgrgid(socket_dir.stat().st_gid).gr_name) == (
        user,
        0o2750,
        "www-data",
    )
    # What root installed is recorded where only root writes, relative to the system root.
    record = root / f"var/lib/dj-layout/{site}/installed.list"
    assert (owner(record.parent), mode(record.parent)) == ("root", 0o700)
    assert f"etc/logrotate.d/{site}" in record.read_text().split()
    assert f"installed {root}/etc/logrotate.d/{site}" in first.stdout
    # The user's part: venv (already there), requirements, migrate, collectstatic.
    user_part = baked.deploytool("install", "--part", "user").stdout
    assert "applied migrations" in user_part and "collected static files" in user_part
    assert (baked.project / "static/staticfiles.json").exists()
    # Again: nothing changes.
    assert "no change" in baked.system_part(root).stdout
    assert "no change" in baked.deploytool("install", "--part", "user").stdout


def test_bin_deploytool_makes_the_venv_whole_or_not_at_all(baked: Stack) -> None:
    """bin/deploytool needs nothing but Debian's Python: without a venv it makes one from the
    requirements; when pip fails (here: an index that does not answer) it leaves none behind."""
    (baked.project / "env3.11").unlink()
    plain = ["env", "PATH=/usr/bin:/bin", "PIP_INDEX_URL=http://127.0.0.1:9/simple", "PIP_RETRIES=0", "PIP_TIMEOUT=2"]
    failed = baked.as_user(*plain, baked.project / "bin/deploytool", "status", check=False)
    assert failed.returncode == 2, failed
    assert "making" in failed.stderr and "pip install -r requirements.txt failed" in failed.stderr, failed.stderr
    assert not (baked.project / "env3.11").exists(), "a half-made venv was left"


def test_parts_refuse_the_wrong_user(baked: Stack) -> None:
    as_root = baked.deploytool_as_root("install", "--part", "user", check=False)
    assert as_root.returncode == 2 and "never as root" in as_root.stderr
    as_user = baked.deploytool("install", "--part", "system", check=False)
    assert as_user.returncode == 2 and "as root" in as_user.stderr


def test_down_on_a_server_install_is_refused_and_touches_nothing(baked: Stack) -> None:
    """`down` stops only a sandbox `up` started: on a server install, as the user or as root,
    it refuses in one line, and the system's nginx (every site of the host) is left alone."""
    pidfile = Path("/run/nginx.pid")
    before = pidfile.read_text() if pidfile.exists() else None
    as_user = baked.deploytool("down", check=False)
    assert as_user.returncode == 2, as_user
    assert len(as_user.stderr.splitlines()) == 1 and "this is a server install" in as_user.stderr, as_user.stderr
    assert "bin/appctl.sh stop" in as_user.stderr and "nothing was stopped" in as_user.stderr
    as_root = baked.deploytool_as_root("down", check=False)
    assert as_root.returncode == 2, as_root
    assert len(as_root.stderr.splitlines()) == 1 and "never runs as root" in as_root.stderr, as_root.stderr
    assert (pidfile.read_text() if pidfile.exists() else None) == before
    if before:
        assert Path(f"/proc/{before.split()[0]}").exists(), "the system nginx was stopped"


# ---- systemd and tmpfiles.d ------------------------------------------------------------------


@pytest.mark.parametrize("unit_of", ["app", "celery", "backup", "clearsessions", "watch"])
def test_systemd_unit_verifies_and_is_hardened(baked: Stack, unit_of: str) -> None:
    """The app's and the worker's units, each scheduled job's service and timer (jobs.ini)."""
    name = baked.env["SERVICE"] if unit_of == "app" else f"{baked.site}_{unit_of}"
    unit = baked.project / "etc/systemd/system" / f"{name}.service"
    units = [unit] if unit_of in ("app", "celery") else [unit, unit.with_suffix(".timer")]  # the timer starts it
    verify = subprocess.run([tool("systemd-analyze"), "verify", *units], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    security = run([tool("systemd-analyze"), "security", "--offline=true", unit])
    score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout).group(1))  # type: ignore[union-attr]
    assert score <= 2.0, security.stdout


def test_tmpfiles_line_makes_the_run_folder(baked: Stack, tmp_path: Path) -> None:
    conf = next((baked.project / "etc/tmpfiles.d").glob("*.conf"))
    # --root reads users from the root's own /etc, as on the server it stands for.
    (tmp_path / "etc").mkdir()
    for database in ("passwd", "group"):
        (tmp_path / "etc" / database).write_text(Path("/etc", database).read_text())
    run([tool("systemd-tmpfiles"), "--create", f"--root={tmp_path}", conf])
    folder = tmp_path / f"run/{baked.site}"
    assert folder.is_dir()
    assert (owner(folder), mode(folder)) == (baked.user, 0o750)


# ---- bad situations --------------------------------------------------------------------------


def test_a_taken_port_stops_up_before_anything_starts(baked: Stack) -> None:
    taken = int(baked.env["PORT_HTTPS"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        proc = baked.deploytool("up", check=False)
        assert proc.returncode == 2
        assert f"port {taken}" in proc.stderr and "taken by another program" in proc.stderr
        assert baked.listening() == [taken]  # only the squatter: nothing of ours started
    assert baked.deploytool("status", check=False).returncode == 3


@pytest.fixture(scope="module")
def stack(project_user: str, project_venv: Path) -> Iterator[Stack]:
    with running_stack(project_user, project_venv, port_block_start=BLOCK, install_type="stage") as running:
        yield running


def test_broken_nginx_config_leaves_the_site_serving(stack: Stack) -> None:
    template = stack.project / "etc/templates/nginx/site.conf.j2"
    good = template.read_text()
    template.write_text(good + "\nthis_is_not_a_directive on;\n")
    try:
        proc = stack.deploytool("up", check=False)
        assert proc.returncode == 2 and "nginx" in proc.stderr and "this_is_not_a_directive" in proc.stderr
        assert stack.https_get("/")[0] == 200
        installed = stack.sandbox / f"etc/nginx/sites-available/{stack.site}.nginx.conf"
        assert "this_is_not_a_directive" not in installed.read_text()
    finally:
        template.write_text(good)
    stack.deploytool("up")


def test_app_that_fails_to_import_is_not_reloaded(stack: Stack) -> None:
    urls = stack.project / stack.answers["project_slug"] / "urls.py"
    good = urls.read_text()
    urls.write_text(good + "\nraise ImportError('a deploy broke this module')\n")
    try:
        proc = stack.as_user(stack.project / "bin/appctl.sh", "reload", check=False)
        assert proc.returncode != 0 and "does not import" in proc.stderr
        assert stack.https_get("/")[0] == 200  # the running code keeps serving
    finally:
        urls.write_text(good)


def test_a_changed_answer_leaves_no_stale_config(baked: Stack) -> None:
    """gunicorn instead of uWSGI: the uWSGI unit and config go, from etc/ and from /etc."""
    root = baked.project.parent / "system"
    root.mkdir()
    copy = root_copy(baked.project)
    baked.system_part(root, cwd=copy)
    old_unit = f"etc/systemd/system/{baked.env['SERVICE']}.service"
    assert (baked.project / old_unit).is_file() and (root / old_unit).is_file()
    # The new revision, in the user's checkout and in root's copy alike (both pulled it).
    for checkout in (baked.project, copy):
        project_json = checkout / "etc/project.json"
        answers = json.loads(project_json.read_text())
        project_json.write_text(json.dumps({**answers, "app_server": "gunicorn"}))
        templates = checkout / "etc/templates"
        (templates / "gunicorn.conf.py.j2").write_text(
            (TEMPLATE_GENERATED / "etc/templates/gunicorn.conf.py.j2").read_text()
        )
        (templates / "uwsgi.yaml.j2").unlink()  # as the post-gen hook prunes it for gunicorn
    run(["chown", "-R", f"{baked.user}:{baked.user}", baked.project / "etc"])
    out = baked.system_part(root, cwd=copy).stdout
    new_unit = old_unit.replace("_uwsgi.service", "_gunicorn.service")
    assert not (baked.project / old_unit).exists() and not (root / old_unit).exists(), out
    assert not (baked.project / "etc/uwsgi.yaml").exists()
    assert (baked.project / new_unit).is_file() and (root / new_unit).is_file()
    assert f"removed {root / old_unit}" in out


# ---- the dedicated servers, as their units run them --------------------------------------------


def dedicated_commands(root: Path, site: str, manager: str) -> dict[str, tuple[list[str], signal.Signals, Path]]:
    """server -> (its command line, the signal that stops it, the file that says so), read from
    what `install` put under the system root: the systemd units' ExecStart=/KillSignal=, or
    supervisor's programs."""
    found = {}
    for name in ("postgresql", "redis", "memcached"):
        unit = f"{site}_{name}"
        if manager == "systemd":
            path = root / f"etc/systemd/system/{unit}.service"
            if not path.exists():
                continue
            lines = dict(line.split("=", 1) for line in path.read_text().splitlines() if re.match(r"^\w+=", line))
            stop = signal.Signals[lines.get("KillSignal", "SIGTERM")]
            found[name] = (shlex.split(lines["ExecStart"]), stop, path)
        else:
            path = root / f"etc/supervisor/conf.d/{site}_services.conf"
            parser = configparser.RawConfigParser()
            parser.read(path)
            if parser.has_section(f"program:{unit}"):
                program = parser[f"program:{unit}"]
                stop = signal.Signals[f"SIG{program['stopsignal']}"]
                found[name] = (shlex.split(program["command"]), stop, path)
    return found


def answers_on(path: Path, ask: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5)
        conn.connect(str(path))
        conn.sendall(ask)
        return conn.recv(100)


@pytest.mark.parametrize("manager, cache", [("systemd", "redis"), ("supervisor", "memcached")])
def test_dedicated_servers_run_from_their_units(
    project_user: str, project_venv: Path, manager: str, cache: str
) -> None:
    """A server install with PostgreSQL and a cache: the user part stops with the command that
    starts the database; the servers, started with exactly the rendered command lines as the
    project user (under the systemd unit's hardening, rebuilt by hand), serve migrate and the
    cache, and stop cleanly with the unit's signal."""
    project = bake_for_user(
        project_user,
        project_venv,
        parent="/home",  # as a real install: the units' PrivateTmp hides /tmp
        port_block_start=BLOCK,
        install_type="dev",  # 62050-62059: the module's other installs are stage and pro
        database="postgresql",
        cache=cache,
        process_manager=manager,
    )
    stack = Stack(project, project_user)
    user = pwd.getpwnam(project_user)
    servers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        root = project.parent / "system"
        root.mkdir()
        stack.system_part(root)
        stack = Stack(project, project_user)  # env.conf now names the root
        commands = dedicated_commands(root, stack.site, manager)
        assert sorted(commands) == sorted(["postgresql", cache])

        first = stack.deploytool("install", "--part", "user", check=False)
        # the one server alone: a bare `supervisorctl update` would start the app before migrate
        unit = f"{stack.site}_postgresql"
        start = f"systemctl enable --now {unit}" if manager == "systemd" else f"supervisorctl update {unit}"
        assert first.returncode == 2, first.stdout + first.stderr
        assert start in first.stderr, first.stderr
        assert f"made the PostgreSQL cluster {project}/data/postgresql" in first.stdout  # said before it stopped
        assert (project / "data/postgresql/PG_VERSION").is_file()  # the cluster, made by the user

        output = project.parent / "servers.log"
        with open(output, "wb") as log:
            for name, (argv, _, unit) in commands.items():
                if manager == "systemd":  # under the unit's hardening, rebuilt by hand
                    loader = project.parent / f"seccomp_exec_{name}.py"
                    argv = in_the_units_sandbox(unit, project_venv, as_the_unit(project_user, loader, *argv, unit=unit))
                    servers[name] = subprocess.Popen(argv, cwd=project, stdout=log, stderr=log)
                else:
                    servers[name] = subprocess.Popen(
                        argv, cwd=project, user=user.pw_uid, group=user.pw_gid, extra_groups=[], stdout=log, stderr=log
                    )
        # PostgreSQL on its port (password required); the cache on a unix socket only.
        cache_socket = Path(stack.env["RUN_DIR"]) / f"{cache}.sock"
        wait_until(
            lambda: stack.listening() == [int(stack.env["PORT_POSTGRESQL"])] and cache_socket.is_socket(),
            f"PostgreSQL on its port and {cache} on its socket ({output})",
        )

        second = stack.deploytool("install", "--part", "user")
        assert "applied migrations" in second.stdout, second.stdout
        ask = {"redis": (b"PING\r\n", b"+PONG"), "memcached": (b"version\r\n", b"VERSION ")}[cache]
        assert answers_on(cache_socket, ask[0]).startswith(ask[1])

        for name, (_, stop, _) in commands.items():
            servers[name].send_signal(stop)
            assert servers[name].wait(timeout=60) == 0, f"{name} did not stop cleanly on {stop.name}"
        assert stack.listening() == []
        said = output.read_text(errors="replace")
        assert "Read-only file system" not in said and "Permission denied" not in said, said[-2000:]
    finally:
        for proc in servers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        run(["rm", "-rf", project.parent])
