"""Baked projects: the project user, its venv, a bake it owns, root's copy of the code,
and a bake's local settings as deploytool reads them."""

from __future__ import annotations

import ast
import atexit
import hashlib
import os
import pwd
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .run import run

TEMPLATE = Path(__file__).resolve().parent.parent.parent
GENERATED = TEMPLATE / "{{cookiecutter.project_slug}}"
# The unix user baked projects run as; created when the tests run as root (as on CI).
PROJECT_USER = "djltest"
# A server's Python for the project user (a venv of root's own Python is unusable to others).
SYSTEM_PYTHON = "/usr/bin/python3"


def ensure_project_user() -> str:
    """The project user, created when missing (as root). Also used by bench/."""
    try:
        pwd.getpwnam(PROJECT_USER)
    except KeyError:
        assert os.geteuid() == 0, f"user {PROJECT_USER} is missing: run as root, or `useradd -m {PROJECT_USER}`"
        run(["useradd", "--create-home", "--shell", "/bin/bash", PROJECT_USER])
    return PROJECT_USER


def pinned_requirements() -> list[str]:
    """Every pin any bake can ask for: the template's requirements with the Jinja stripped."""
    lines = []
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (GENERATED / name).read_text().splitlines():
            if re.match(r"^[A-Za-z][\w.\[\]-]*==", line):
                lines.append(line)
    return sorted(set(lines))


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
