"""Bakes: the default and every value of every choice, each checked as a user would."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import MATRIX, postgresql_for, run, tool


@pytest.fixture(scope="module", params=list(MATRIX), ids=list(MATRIX))
def baked(request: pytest.FixtureRequest, bake_project: Any, project_venv: Path) -> tuple[Path, dict[str, Any]]:
    answers = MATRIX[request.param]
    project = bake_project(**answers)
    # The install's venv (env3.X, named after its Python) is the shared test venv.
    (project / "env3.11").symlink_to(project_venv)
    return project, answers


def answers_of(project: Path) -> dict[str, Any]:
    return json.loads((project / "etc/project.json").read_text())


def env_conf(project: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (project / "etc/env.conf").read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


JINJA = re.compile(r"\{\{[ \t]*[A-Za-z_]|\{%-?[ \t]*[a-z]")


def test_no_jinja_left_unrendered(baked: tuple[Path, dict[str, Any]]) -> None:
    project, _ = baked
    # Copied without rendering, by design (_copy_without_render): deploytool's own Jinja
    # templates and its Python code.
    verbatim = (project / "etc/templates", project / "deploytool")
    leftovers = [
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file()
        and not any(folder in path.parents for folder in verbatim)
        and "env3.11" not in path.parts
        and not path.name.endswith(".html")  # Django templates use the same braces
        and JINJA.search(path.read_text(errors="replace"))
    ]
    assert leftovers == []
    # The Django template was rendered by cookiecutter, leaving Django's own tags intact.
    home = next(project.rglob("home.html")).read_text()
    assert "cookiecutter" not in home and "{% load static %}" in home


def test_generated_python_passes_ruff(baked: tuple[Path, dict[str, Any]]) -> None:
    project, _ = baked
    run([tool("ruff"), "check", "--no-cache", "."], cwd=project)
    rendered = [p for p in (project / "etc").glob("*.py") if p.name != "settings_local.py"]
    for path in [*rendered, project / "etc/settings_local.py"]:
        run([tool("ruff"), "check", "--no-cache", "--config", project / "pyproject.toml", path], cwd=project)


def test_shell_scripts_pass_shellcheck(baked: tuple[Path, dict[str, Any]]) -> None:
    project, _ = baked
    scripts = [p for p in project.rglob("*.sh") if "env3" not in p.parts] + [project / "bin/deploytool"]
    assert project / "bin/appctl.sh" in scripts and project / "bin/uwsgictl.sh" in scripts
    run([tool("shellcheck"), "-x", *scripts], cwd=project)


def test_deploytool_check_passes(baked: tuple[Path, dict[str, Any]]) -> None:
    """nginx -t, systemd-analyze verify, logrotate -d, shellcheck and manage.py check, for real."""
    project, answers = baked
    proc = run([project / "bin/deploytool", "check"], cwd=project)
    names = proc.stdout
    assert "ok   nginx -t" in names
    assert ("systemd-analyze verify" in names) == (answers.get("process_manager", "systemd") == "systemd")
    assert "ok   logrotate -d" in names
    assert "ok   shellcheck" in names
    production = answers.get("install_type", "dev") != "dev"
    assert ("ok   manage.py check --deploy" in names) == production
    assert "FAIL" not in names


def test_generated_project_tests_pass(baked: tuple[Path, dict[str, Any]], project_user: str) -> None:
    project, answers = baked
    tests = [project / "env3.11/bin/python", "-m", "pytest", "-p", "no:cacheprovider"]
    if answers.get("database") == "postgresql":
        with postgresql_for(project, project_user):
            run(tests, cwd=project)
    else:
        run(tests, cwd=project)


def test_pruned_to_the_answers(baked: tuple[Path, dict[str, Any]]) -> None:
    project, _ = baked
    answers = answers_of(project)
    templates = {p.relative_to(project / "etc/templates").as_posix() for p in (project / "etc/templates").rglob("*.j2")}
    assert ("uwsgi.yaml.j2" in templates) == (answers["app_server"] == "uwsgi")
    assert ("gunicorn.conf.py.j2" in templates) == (answers["app_server"] == "gunicorn")
    assert any(t.startswith("systemd/") for t in templates) == (answers["process_manager"] == "systemd")
    assert any(t.startswith("supervisor/") for t in templates) == (answers["process_manager"] == "supervisor")
    requirements = (project / "requirements.txt").read_text()
    assert ("uWSGI==" in requirements) == (answers["app_server"] == "uwsgi")
    assert ("gunicorn==" in requirements) == (answers["app_server"] == "gunicorn")
    assert ("psycopg[binary]==" in requirements) == (answers["database"] == "postgresql")
    assert ("redis==" in requirements) == (answers["cache"] == "redis")
    assert ("pymemcache==" in requirements) == (answers["cache"] == "memcached")


def test_requirements_are_pinned(baked: tuple[Path, dict[str, Any]]) -> None:
    project, _ = baked
    lines = [x for x in (project / "requirements.txt").read_text().splitlines() if x and not x.startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z][\w.\[\]-]*==[\w.]+", line) for line in lines), lines
    assert any(line.startswith("Django==5.2.") for line in lines)


def test_settings_end_with_the_settings_local_import(baked: tuple[Path, dict[str, Any]]) -> None:
    project, _ = baked
    slug = answers_of(project)["project_slug"]
    code = [x for x in (project / slug / "settings.py").read_text().splitlines() if x.strip()]
    tail = "\n".join(code[-8:])
    assert "from .settings_local import *" in tail
    assert "except ModuleNotFoundError" in tail and "raise" in tail


def test_settings_local_is_private_and_ignored(baked: tuple[Path, dict[str, Any]]) -> None:
    project, _ = baked
    settings = project / "etc/settings_local.py"
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    secret = re.search(r'^SECRET_KEY = "(.+)"$', settings.read_text(), re.M)
    assert secret and len(secret.group(1)) >= 50 and not secret.group(1).startswith("django-insecure-")
    run(["git", "init", "-q"], cwd=project)
    run(["git", "add", "-A"], cwd=project)
    tracked = run(["git", "ls-files"], cwd=project).stdout.split()
    local = {"etc/settings_local.py", "etc/env.conf", "etc/htpasswd", "etc/admin_password"}
    assert not local & set(tracked)
    assert not [t for t in tracked if t.endswith("settings_local.py") or t.startswith(("media/", "data/", "logs"))]
    assert (
        secret.group(1)
        not in run(["git", "grep", "-I", "-c", "-e", "SECRET", "--cached"], cwd=project, check=False).stdout
    )
    for path in project.rglob("*"):
        if path.name in {"htpasswd", "admin_password"}:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_links_point_where_seed_000_says(baked: tuple[Path, dict[str, Any]]) -> None:
    project, _ = baked
    answers = answers_of(project)
    install_type = env_conf(project)["INSTALL_TYPE"]
    where = f"{answers['user']}/{answers['domain']}/{install_type}"
    assert os.readlink(project / "logs") == f"/var/log/{where}"
    assert os.readlink(project / "backups") == f"/var/backups/{where}"
    link = project / answers["project_slug"] / "settings_local.py"
    assert os.readlink(link) == "../etc/settings_local.py"
    assert link.resolve() == (project / "etc/settings_local.py").resolve()


def test_secret_keys_differ_between_bakes(bake_project: Any) -> None:
    keys = set()
    for _ in range(2):
        text = (bake_project() / "etc/settings_local.py").read_text()
        keys.add(re.search(r'^SECRET_KEY = "(.+)"$', text, re.M).group(1))  # type: ignore[union-attr]
    assert len(keys) == 2


# ---- ports ---------------------------------------------------------------------------------

EXPECTED_PORTS = {
    # install type: (devserver, app, stats, https, http, postgresql, redis, memcached)
    "dev": (60000, 60001, 60002, 60003, 60004, 60005, 60006, 60007),
    "stage": (60010, 60011, 60012, 60013, 60014, 60015, 60016, 60017),
    "pro": (60020, 60021, 60022, 60023, 60024, 60025, 60026, 60027),
}


@pytest.mark.parametrize("install_type", list(EXPECTED_PORTS))
def test_port_map_of_each_install_type(bake_project: Any, install_type: str) -> None:
    project = bake_project(install_type=install_type, port_block_start=60000)
    env = env_conf(project)
    names = ("DEVSERVER", "APP", "STATS", "HTTPS", "HTTP", "POSTGRESQL", "REDIS", "MEMCACHED")
    assert tuple(int(env[f"PORT_{name}"]) for name in names) == EXPECTED_PORTS[install_type]
    assert int(env["BASE_PORT"]) == EXPECTED_PORTS[install_type][0]
    shown = subprocess.run(
        [os.sys.executable, "-m", "deploytool", "ports"], cwd=project, capture_output=True, text=True, check=True
    ).stdout
    assert "project block: 60000-60049" in shown
    assert re.search(rf"{install_type}\s+{EXPECTED_PORTS[install_type][0]}-\d+\s+<- this install", shown)
    assert re.search(rf"app\s+{EXPECTED_PORTS[install_type][1]}", shown)
    # a bake is a server install: nginx answers on 443 and 80, not on the block's ports
    assert re.search(rf"https\s+{EXPECTED_PORTS[install_type][3]}  \(sandbox only; 443 on a server\)", shown), shown


# ---- the app server's processes ------------------------------------------------------------


def test_app_workers_come_from_the_host_unless_set(bake_project: Any) -> None:
    """Empty APP_WORKERS: one per core of this host and one more, within half its memory, rendered; a number
    given to init stays through a later init and render; a bad one is refused, nothing changed."""
    project = bake_project(app_server="gunicorn")
    cores = os.cpu_count() or 1
    meminfo = re.search(r"^MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M)
    assert meminfo
    memory_mb = int(meminfo.group(1)) // 1024
    expected = max(2, min(cores + 1, memory_mb // 2 // 96))
    config = project / "etc/gunicorn.conf.py"
    assert env_conf(project)["APP_WORKERS"] == ""
    assert re.search(rf"^workers = {expected}$", config.read_text(), re.M), config.read_text()

    def deploytool(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [os.sys.executable, "-m", "deploytool", *args]
        return subprocess.run(argv, cwd=project, capture_output=True, text=True)

    assert deploytool("init", "--install-type", "dev", "--app-workers", "3").returncode == 0
    assert deploytool("init", "--install-type", "dev").returncode == 0  # kept when omitted
    assert deploytool("render").returncode == 0
    assert env_conf(project)["APP_WORKERS"] == "3" and re.search(r"^workers = 3$", config.read_text(), re.M)
    before = config.read_text(), (project / "etc/env.conf").read_text()
    refused = deploytool("init", "--install-type", "dev", "--app-workers", "1")
    assert refused.returncode == 2 and "app workers '1': give a number of processes from 2 to 256" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert (config.read_text(), (project / "etc/env.conf").read_text()) == before
