"""Shared fixtures: the project user, the project's Python, and baking with pytest-cookies."""

from __future__ import annotations

import ast
import atexit
import hashlib
import http.client
import json
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

TEMPLATE = Path(__file__).resolve().parent.parent
GENERATED = TEMPLATE / "{{cookiecutter.project_slug}}"
# The unix user baked projects run as; created when the tests run as root (as on CI).
PROJECT_USER = "djltest"
# A server's Python for the project user (a venv of root's own Python is unusable to others).
SYSTEM_PYTHON = "/usr/bin/python3"


def run(argv: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a program, failing the test with its output when it fails."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, argv))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def tool(name: str) -> str:
    """A program the tests run: the tests' own pinned one (ruff, shellcheck, …), else from PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed: run the tests with tests/run.sh, which installs it"
    return found


def ensure_project_user() -> str:
    """The project user, created when missing (as root). Also used by bench/."""
    try:
        pwd.getpwnam(PROJECT_USER)
    except KeyError:
        assert os.geteuid() == 0, f"user {PROJECT_USER} is missing: run as root, or `useradd -m {PROJECT_USER}`"
        run(["useradd", "--create-home", "--shell", "/bin/bash", PROJECT_USER])
    return PROJECT_USER


@pytest.fixture
def as_root() -> None:
    """A failure, not a skip: running servers as another user needs root (as CI has)."""
    assert os.geteuid() == 0, "this test runs programs as the project user: run tests/run.sh as root"


@pytest.fixture(scope="session")
def project_user() -> str:
    return ensure_project_user()


def pinned_requirements() -> list[str]:
    """Every pin any bake can ask for: the template's requirements with the Jinja stripped."""
    lines = []
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (GENERATED / name).read_text().splitlines():
            if re.match(r"^[A-Za-z][\w.\[\]-]*==", line):
                lines.append(line)
    return sorted(set(lines))


@pytest.fixture(scope="session")
def project_venv() -> Path:
    return ensure_project_venv()


def ensure_project_venv() -> Path:
    """One venv from the system Python with every pinned requirement, cached by their hash.

    It lives in the temp folder so that the project user can run it too. Also used by bench/."""
    requirements = "\n".join(pinned_requirements()) + "\n"
    digest = hashlib.sha256(requirements.encode()).hexdigest()[:12]
    venv = Path(tempfile.gettempdir()) / f"dj-layout-venv-{digest}"
    if not (venv / "ok").exists():
        assert Path(SYSTEM_PYTHON).exists(), f"{SYSTEM_PYTHON} missing: apt-get install python3 python3-venv"
        shutil.rmtree(venv, ignore_errors=True)
        run([SYSTEM_PYTHON, "-m", "venv", venv])
        (venv / "requirements.txt").write_text(requirements)
        run([venv / "bin/pip", "install", "-q", "--disable-pip-version-check", "-r", venv / "requirements.txt"])
        (venv / "ok").touch()
        os.chmod(venv, 0o755)
    return venv


@pytest.fixture(scope="session")
def bake_project(cookies_session: Any, project_user: str) -> Iterator[Any]:
    """bake(**answers) -> the baked project's path, asserting the bake succeeded."""

    def bake(**answers: Any) -> Path:
        context = {"user": project_user, **answers}
        result = cookies_session.bake(extra_context=context)
        assert result.exit_code == 0, f"bake failed for {context}: {result.exception}"
        return Path(result.project_path)

    yield bake


def local_settings(project: Path) -> dict[str, Any]:
    """The literal settings of a baked install's settings_local.py (SECRET_KEY, DATABASES, …),
    parsed as deploytool reads them: the file imports deploytool, which a test need not."""

    def literal(node: ast.expr) -> Any:
        if isinstance(node, ast.Dict):  # keep the literal entries of a dict
            entries = [(literal(k), literal(v)) for k, v in zip(node.keys, node.values, strict=True) if k]
            return {k: v for k, v in entries if k is not None and v is not None}
        try:
            return ast.literal_eval(node)
        except ValueError:
            return None  # a computed value (paths from ROOT, sockets from the layout)

    found: dict[str, Any] = {}
    for node in ast.parse((project / "etc/settings_local.py").read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = literal(node.value)
    return found


@contextmanager
def postgresql_for(project: Path, user: str) -> Iterator[None]:
    """A throwaway PostgreSQL cluster, run by the project user, where the install's
    settings_local.py says the database is (127.0.0.1, its port of the block)."""
    db = local_settings(project)["DATABASES"]["default"]
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    assert bins, "PostgreSQL is not installed: apt-get install postgresql (tests/run.sh does)"
    bindir = bins[-1].parent
    data = Path(tempfile.mkdtemp(prefix="dj-layout-pg-"))
    shutil.chown(data, user, user)
    as_user = ["runuser", "-u", user, "--"]
    pwfile = data / "pw"
    pwfile.write_text(db["PASSWORD"] + "\n")
    shutil.chown(pwfile, user, user)
    run(
        [
            *as_user,
            bindir / "initdb",
            "-D",
            data / "cluster",
            "-U",
            db["USER"],
            "--pwfile",
            pwfile,
            "-A",
            "scram-sha-256",
        ]
    )
    options = f"-c listen_addresses=127.0.0.1 -p {db['PORT']} -c unix_socket_directories={data}"
    run([*as_user, bindir / "pg_ctl", "-D", data / "cluster", "-o", options, "-l", data / "log", "-w", "start"])
    try:
        env = {**os.environ, "PGPASSWORD": db["PASSWORD"]}
        run([bindir / "createdb", "-h", "127.0.0.1", "-p", db["PORT"], "-U", db["USER"], db["NAME"]], env=env)
        yield
    finally:
        run([*as_user, bindir / "pg_ctl", "-D", data / "cluster", "-m", "fast", "-w", "stop"])
        shutil.rmtree(data)


# ---- a running stack ------------------------------------------------------------------------


class Stack:
    """A baked project whose sandbox stack runs as the project user: what a user reaches."""

    def __init__(self, project: Path, user: str) -> None:
        self.project = project
        self.user = user
        self.answers: dict[str, Any] = json.loads((project / "etc/project.json").read_text())
        self.env = dict(
            line.split("=", 1) for line in (project / "etc/env.conf").read_text().splitlines() if "=" in line
        )
        self.site = self.env["SITE"]
        self.https = int(self.env["PORT_HTTPS"])
        self.http = int(self.env["PORT_HTTP"])
        self.sandbox = project / ".sandbox"
        self.ca = self.sandbox / "etc/ssl/sandbox-ca.pem"

    def as_user(self, *argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", self.user, "--", *map(str, argv)]
        if check:
            return run(command, cwd=self.project)
        return subprocess.run(command, cwd=self.project, capture_output=True, text=True)

    def deploytool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.as_user(self.project / "env3.11/bin/python", "-m", "deploytool", *args, check=check)

    def deploytool_as_root(
        self, *args: str, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """deploytool as root, from root's own copy of the code (``cwd``, made when not given)
        with the root-owned venv: never the user's checkout or its env3.11 link."""
        argv = [ensure_project_venv() / "bin/python", "-m", "deploytool", "--root", self.project, *args]
        where = cwd or root_copy(self.project)
        if check:
            return run(argv, cwd=where)
        return subprocess.run([str(a) for a in argv], cwd=where, capture_output=True, text=True)

    def system_part(
        self, system_root: Path, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The server install's system part into ``system_root`` (standing for /): the user
        points the install there (init --system-root), root installs from its own copy."""
        self.deploytool("init", "--install-type", self.env["INSTALL_TYPE"], "--system-root", str(system_root))
        return self.deploytool_as_root("install", "--root", str(system_root), "--part", "system", check=check, cwd=cwd)

    def https_get(
        self, path: str = "/", headers: dict[str, str] | None = None, host: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """GET over HTTPS by name, trusting only the sandbox CA (no -k)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        name = host or self.site
        raw = socket.create_connection(("127.0.0.1", self.https), timeout=10)
        conn = http.client.HTTPSConnection(name, self.https, context=context, timeout=10)
        conn.sock = context.wrap_socket(raw, server_hostname=self.site)
        return _exchange(conn, "GET", path, headers)

    def http_request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        port: int | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port or self.http, timeout=10)
        return _exchange(conn, method, path, {"Host": self.site, **(headers or {})}, body)

    def listening(self) -> list[int]:
        """Ports of the install's ten that something listens on (read from /proc)."""
        base = int(self.env["BASE_PORT"])
        found = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if fields[3] == "0A" and base <= port < base + 10:
                    found.add(port)
        return sorted(found)


def root_copy(project: Path) -> Path:
    """What the admin makes for the system part: a copy of the project's code that only root
    can change (on a server, a clone of the repository at the install's revision)."""
    copy = Path(tempfile.mkdtemp(prefix="dj-layout-rootcopy-"))  # root's, 0700
    for part in ("deploytool", "etc/templates"):
        shutil.copytree(project / part, copy / part, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(project / "etc/project.json", copy / "etc/project.json")
    run(["chown", "-R", "root:root", copy])
    run(["chmod", "-R", "go-w", copy])
    atexit.register(shutil.rmtree, copy, True)
    return copy


def _exchange(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str] | None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def bake_for_user(user: str, venv: Path, parent: str | None = None, **answers: Any) -> Path:
    """Bake into a folder the project user owns (in ``parent``, default the temp folder),
    with the shared venv as its env3.11."""
    from cookiecutter.main import cookiecutter

    base = Path(tempfile.mkdtemp(prefix="dj-layout-stack-", dir=parent))
    project = Path(
        cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(base), extra_context={"user": user, **answers})
    )
    (project / "env3.11").symlink_to(venv)
    run(["chown", "-R", "-h", f"{user}:{user}", base])
    return project


@contextmanager
def running_stack(user: str, venv: Path, **answers: Any) -> Iterator[Stack]:
    project = bake_for_user(user, venv, **answers)
    stack = Stack(project, user)
    try:
        stack.deploytool("up")
        stack = Stack(project, user)  # env.conf now names the sandbox
        yield stack
    finally:
        stack.deploytool("down", check=False)
        left = stack.listening()
        shutil.rmtree(project.parent, ignore_errors=True)
        assert left == [], f"ports still listening after down: {left}"
