"""cruft for real, with git: a copy of this template in a repo of its own with two revisions
(the second changes an etc/ template and deploytool, and is tagged by bump2version), a
project made from the first with `cruft create`, lived in, then `cruft update`d.

What a user checks afterwards: no conflict markers and no .rej files, every local file
(secrets, media, the database, configs rendered for the install) byte for byte as it was,
the template change in the local config once `deploytool render` ran, `cruft check` happy,
and after an answer changes (`--variables-to-update`) an install that still serves.

cruft runs in a user's usual environment: Python writes bytecode (PYTHONDONTWRITEBYTECODE
is dropped), so a hook that left .pyc files in cruft's temporary renders would show.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib
from support import BLOCKS, GIT, TEMPLATE, Stack, run, tool

TEMPLATE_FILES = ["cookiecutter.json", "hooks", "{{cookiecutter.project_slug}}", ".bumpversion.cfg", "pyproject.toml"]
COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.py[co]", ".ruff_cache", ".pytest_cache")
NEW_LINE = "# Template revision two: every uwsgi.yaml shows this line after `deploytool render`."
BLOCK = BLOCKS["lifecycle"]  # this module's stack is the pro install of the block (test_lifecycle runs dev and stage)


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env


def cruft(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("cruft"), *args], cwd=cwd, env=user_env())


@dataclass
class TemplateRepo:
    path: Path
    first: str
    second: str
    first_version: str
    second_version: str


@pytest.fixture(scope="module")
def template_repo() -> Iterator[TemplateRepo]:
    base = Path(tempfile.mkdtemp(prefix="dj-layout-cruft-template-"))
    repo = base / "dj-layout"
    repo.mkdir()
    try:
        for name in TEMPLATE_FILES:
            source = TEMPLATE / name
            if source.is_dir():
                shutil.copytree(source, repo / name, ignore=COPY_IGNORE, symlinks=True)
            else:
                shutil.copy2(source, repo / name)
        run(["git", "init", "-q", "-b", "main"], cwd=repo)
        run(["git", "config", "user.name", "dj-layout tests"], cwd=repo)
        run(["git", "config", "user.email", "tests@dj-layout.invalid"], cwd=repo)
        run(["git", "add", "-A"], cwd=repo)
        run(["git", "commit", "-q", "-m", "First revision"], cwd=repo)
        first = run(["git", "rev-parse", "HEAD"], cwd=repo).stdout.strip()
        first_version = json.loads((repo / "cookiecutter.json").read_text())["_template_version"]

        generated = repo / "{{cookiecutter.project_slug}}"
        uwsgi = generated / "etc/templates/uwsgi.yaml.j2"
        head, rest = uwsgi.read_text().split("\n", 1)
        uwsgi.write_text(f"{head}\n{NEW_LINE}\n{rest}")
        init = generated / "deploytool/__init__.py"
        init.write_text(init.read_text() + "\n# Changed in the template's second revision.\n")
        # The template's own Django files change too, where the user's app is wired in.
        package = generated / "{{cookiecutter.project_slug}}"
        for name in ("settings.py", "urls.py"):
            (package / name).write_text((package / name).read_text() + TEMPLATE_CHANGE)
        run(["git", "commit", "-q", "-am", "Second revision: uwsgi.yaml, deploytool, settings and urls"], cwd=repo)
        run([tool("bump2version"), "minor"], cwd=repo)  # commits and tags, as a release does
        second = run(["git", "rev-parse", "HEAD"], cwd=repo).stdout.strip()
        second_version = json.loads((repo / "cookiecutter.json").read_text())["_template_version"]
        assert run(["git", "tag", "--points-at", "HEAD"], cwd=repo).stdout.strip() == f"v{second_version}"
        yield TemplateRepo(repo, first, second, first_version, second_version)
    finally:
        shutil.rmtree(base)


# ---- what a project holds ---------------------------------------------------------------------
def git_as(user: str | None, project: Path, *args: str) -> str:
    prefix = ["runuser", "-u", user, "--"] if user else []
    return run([*prefix, *GIT, "-C", project, *args]).stdout


def local_files(project: Path, user: str | None = None) -> list[str]:
    """Every git-ignored file (and link) of the project, bytecode aside."""
    out = git_as(user, project, "ls-files", "--others", "--ignored", "--exclude-standard", "-z")
    return sorted(name for name in out.split("\0") if name and "__pycache__" not in name)


def snapshot(project: Path, names: list[str]) -> dict[str, tuple[str, bytes | str, int]]:
    """name -> (kind, content or link target, mode): what "byte-identical" compares."""
    found: dict[str, tuple[str, bytes | str, int]] = {}
    for name in names:
        path = project / name
        if path.is_symlink():
            found[name] = ("link", os.readlink(path), 0)
        else:
            found[name] = ("file", path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return found


def skip_list(project: Path) -> list[str]:
    return tomllib.loads((project / "pyproject.toml").read_text())["tool"]["cruft"]["skip"]


def uncovered(project: Path, names: list[str]) -> list[str]:
    """Local files cruft's skip list does not cover (read as cruft 2.16 reads it: a path, or
    a glob when it holds a `*`; a folder covers what is inside)."""
    covered: set[Path] = set()
    for entry in skip_list(project):
        covered |= set(project.glob(entry)) if "*" in entry else {project / entry}
    return [name for name in names if not ({project / name} | set((project / name).parents)) & covered]


def assert_clean_merge(project: Path, user: str | None = None) -> None:
    """No conflict markers in tracked files, no .rej (or .orig) files anywhere."""
    markers = subprocess.run(
        [
            *(["runuser", "-u", user, "--"] if user else []),
            "git",
            "-C",
            project,
            "grep",
            "-n",
            "-E",
            "^(<<<<<<<|>>>>>>>)",
        ],
        capture_output=True,
        text=True,
    )
    assert markers.returncode == 1, f"conflict markers:\n{markers.stdout}{markers.stderr}"
    untracked = git_as(user, project, "status", "--porcelain", "--untracked-files=all")
    assert "??" not in untracked, f"files the update left beside the tracked ones:\n{untracked}"
    left = [p for p in git_as(user, project, "ls-files", "--others", "-z").split("\0") if p.endswith((".rej", ".orig"))]
    assert left == [], left


def create(template: TemplateRepo, checkout: str, folder: Path, **answers: object) -> Path:
    extra = json.dumps({"user": "djltest", "port_block_start": BLOCK, **answers})
    options = ["--checkout", checkout, "--no-input", "--output-dir", str(folder), "--extra-context", extra]
    cruft("create", template.path, *options, cwd=folder)
    (project,) = [p for p in folder.iterdir() if (p / ".cruft.json").exists()]
    return project


def deploytool(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([project / "bin/deploytool", *args], cwd=project)


# ---- the user's own code ----------------------------------------------------------------------
TEMPLATE_CHANGE = "\n# Changed in the template's second revision.\n"
BLOG_VIEWS = 'from django.http import HttpResponse\n\n\ndef index(request):\n    return HttpResponse("blog")\n'
BLOG_URLS = (
    'from django.urls import path\n\nfrom . import views\n\nurlpatterns = [path("", views.index, name="index")]\n'
)
CHECK_APP = (
    "from django.conf import settings; from django.urls import resolve; "
    "print(settings.BLOG_TITLE, 'blog' in settings.INSTALLED_APPS, resolve('/blog/').func.__module__)"
)


def add_an_app(project: Path, slug: str, manage: list[str | Path]) -> None:
    """What the generated README says to do: startapp, the app and a setting in
    custom_settings.py, its routes in custom_urls.py."""
    run([*manage, "startapp", "blog"], cwd=project)
    (project / "blog/views.py").write_text(BLOG_VIEWS)
    (project / "blog/urls.py").write_text(BLOG_URLS)
    custom = project / slug / "custom_settings.py"
    text = custom.read_text().replace("EXTRA_APPS: list[str] = []", 'EXTRA_APPS: list[str] = ["blog"]')
    custom.write_text(text + 'BLOG_TITLE = "Our blog"\n')
    urls = project / slug / "custom_urls.py"
    urls.write_text(
        urls.read_text()
        .replace(
            "from django.urls import URLPattern, URLResolver",
            "from django.urls import URLPattern, URLResolver, include, path",
        )
        .replace(
            "urlpatterns: list[URLPattern | URLResolver] = []",
            'urlpatterns: list[URLPattern | URLResolver] = [path("blog/", include("blog.urls"))]',
        )
    )
    assert_the_app_works(project, manage)


def assert_the_app_works(project: Path, manage: list[str | Path]) -> None:
    run([*manage, "check"], cwd=project)
    # The last line: Django 5.2's shell first says what it imported automatically.
    shown = run([*manage, "shell", "-c", CHECK_APP], cwd=project).stdout.strip().splitlines()[-1].split()
    assert shown == ["Our", "blog", "True", "blog.views"], shown


# ---- the round trip --------------------------------------------------------------------------
def test_create_then_update_keeps_every_local_file(
    template_repo: TemplateRepo, project_user: str, project_venv: Path
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="dj-layout-cruft-"))
    domain = f"cruft-{os.getpid()}.example"  # its log folder below is a real one: a name of its own
    made: list[Path] = []
    try:
        project = create(template_repo, template_repo.first, folder, domain=domain)
        state = json.loads((project / ".cruft.json").read_text())
        assert state["commit"] == template_repo.first
        # The skip list lives in pyproject.toml, which cruft reads on each update; in .cruft.json
        # too, cruft 2.16 would append the pyproject list to it on every update.
        assert "skip" not in state

        # Lived in: the venv, a database with a row, an upload, a local setting, a tuned
        # template and a README line (tracked edits), the configs rendered from them.
        (project / "env3.11").symlink_to(project_venv)
        manage = [project / "env3.11/bin/python", "manage.py"]
        run([*manage, "migrate", "--noinput"], cwd=project)
        slug = json.loads((project / "etc/project.json").read_text())["project_slug"]
        run([*manage, "shell", "-c", f"from {slug}.models import Visit; Visit.objects.create()"], cwd=project)
        (project / "media/upload.txt").write_text("a user's upload\n")
        settings = project / "etc/settings_local.py"
        settings.write_text(settings.read_text() + '\nLOCAL_SETTING = "kept"\n')
        template = project / "etc/templates/uwsgi.yaml.j2"
        tuned = "  processes: {{ install.app_workers }}\n"
        assert tuned in template.read_text()
        template.write_text(template.read_text().replace(tuned, "  processes: 8\n"))
        (project / "README.md").write_text((project / "README.md").read_text() + "\nOur own notes.\n")
        add_an_app(project, slug, manage)
        deploytool(project, "render")
        # On a server `deploytool install` makes the folder the logs link points at (the
        # user's, 750; its parents root's).
        log_dir = Path(os.readlink(project / "logs"))
        for folder_ in reversed([log_dir, *log_dir.parents]):
            if not folder_.exists():
                folder_.mkdir(mode=0o755)
                made.append(folder_)
        log_dir.chmod(0o750)
        shutil.chown(log_dir, project_user, project_user)
        git_as(None, project, "init", "-q", "-b", "main")
        git_as(None, project, "add", "-A")
        git_as(None, project, "commit", "-q", "-m", "Generated, and lived in")

        custom_settings = (project / f"{slug}/custom_settings.py").read_text()
        names = local_files(project)
        assert {
            "etc/settings_local.py",
            "etc/env.conf",
            "etc/uwsgi.yaml",
            "data/db.sqlite3",
            "media/upload.txt",
        } <= set(names)
        # Every local file is in the skip list, but the two links to the system's folders (which
        # are the same in both of cruft's renders, and must not be deleted there: see pyproject.toml).
        assert uncovered(project, names) == ["backups", "logs"]
        before = snapshot(project, names)

        update = cruft("update", "-y", cwd=project)
        assert "Good work" in update.stdout, update.stdout + update.stderr
        assert "Failed to apply" not in update.stdout + update.stderr  # the 3-way merge worked
        assert_clean_merge(project)
        assert local_files(project) == names
        assert snapshot(project, names) == before, "a local file changed"
        assert stat.S_IMODE(log_dir.stat().st_mode) == 0o750, "cruft changed the mode of the real log folder"

        # The update: the template change merged with the local one, deploytool, the version.
        merged = template.read_text()
        assert NEW_LINE in merged and "  processes: 8\n" in merged
        assert "second revision" in (project / "deploytool/__init__.py").read_text()
        assert (project / "README.md").read_text().endswith("\nOur own notes.\n")
        project_json = json.loads((project / "etc/project.json").read_text())
        assert project_json["template_version"] == template_repo.second_version != template_repo.first_version
        assert json.loads((project / ".cruft.json").read_text())["commit"] == template_repo.second
        changed = set(git_as(None, project, "diff", "HEAD", "--name-only").split())
        assert changed == {
            ".cruft.json",
            "README.md",
            "deploytool/__init__.py",
            "etc/project.json",
            "etc/templates/uwsgi.yaml.j2",
            f"{slug}/settings.py",
            f"{slug}/urls.py",
        }, changed
        # The user's app and setting came through untouched, and work with the new template.
        for name in (f"{slug}/settings.py", f"{slug}/urls.py"):
            assert (project / name).read_text().endswith(TEMPLATE_CHANGE)
        assert (project / f"{slug}/custom_settings.py").read_text() == custom_settings
        assert_the_app_works(project, manage)
        git_as(None, project, "commit", "-q", "-am", f"Update to dj-layout {template_repo.second_version}")

        # The install takes the new templates on render; nothing else of its own changes.
        rendered = project / "etc/uwsgi.yaml"
        assert NEW_LINE not in rendered.read_text()
        out = deploytool(project, "render").stdout
        assert "rendered etc/uwsgi.yaml" in out, out
        assert NEW_LINE in rendered.read_text() and "  processes: 8\n" in rendered.read_text()
        after = snapshot(project, names)
        assert {name for name in names if after[name] != before[name]} == {"etc/uwsgi.yaml"}
        checked = subprocess.run([project / "bin/deploytool", "check"], cwd=project, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        status = subprocess.run([project / "bin/deploytool", "status"], cwd=project, capture_output=True, text=True)
        assert f"template    dj-layout {template_repo.second_version}" in status.stdout, status.stdout
        assert "Good work" in cruft("check", cwd=project).stdout
    finally:
        for made_folder in reversed(made):
            shutil.rmtree(made_folder, ignore_errors=True)
        shutil.rmtree(folder)


def test_an_answer_changed_by_cruft_update_leaves_a_working_install(
    template_repo: TemplateRepo, project_user: str, project_venv: Path
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="dj-layout-cruft-"))
    folder.chmod(0o755)
    stack: Stack | None = None
    try:
        project = create(template_repo, template_repo.second, folder, install_type="pro")
        (project / "env3.11").symlink_to(project_venv)
        git_as(None, project, "init", "-q", "-b", "main")
        git_as(None, project, "add", "-A")
        git_as(None, project, "commit", "-q", "-m", "Generated")
        names = local_files(project)
        before = snapshot(project, names)

        update = cruft("update", "-y", "--variables-to-update", '{"app_server": "gunicorn"}', cwd=project)
        assert "Good work" in update.stdout, update.stdout + update.stderr
        assert_clean_merge(project)
        assert snapshot(project, names) == before, "a local file changed"
        assert json.loads((project / "etc/project.json").read_text())["app_server"] == "gunicorn"
        assert re.search(r"(?m)^gunicorn==", (project / "requirements.txt").read_text())
        assert not (project / "etc/templates/uwsgi.yaml.j2").exists()
        assert (project / "etc/templates/gunicorn.conf.py.j2").exists()
        git_as(None, project, "add", "-A")
        git_as(None, project, "commit", "-q", "-m", "Serve with gunicorn")

        deploytool(project, "render")
        assert (project / "etc/gunicorn.conf.py").exists()
        run(["chown", "-R", "-h", f"{project_user}:{project_user}", folder])
        stack = Stack(project, project_user)
        stack.deploytool("up")
        stack = Stack(project, project_user)
        assert stack.env["APP_SERVER"] == "gunicorn"
        status, _, body = stack.https_get("/")
        assert status == 200 and b"Visits:" in body
        assert "gunicorn is running" in stack.as_user(project / "bin/appctl.sh", "status").stdout
        # Everything `up` made (sandbox, static, database, venv link) is local and skipped too.
        assert uncovered(project, local_files(project, project_user)) == ["backups", "logs"]
        assert_clean_merge(project, project_user)
    finally:
        if stack is not None:
            stack.deploytool("down", check=False)
            assert stack.listening() == []
        shutil.rmtree(folder)
