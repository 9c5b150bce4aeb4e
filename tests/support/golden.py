"""Golden configs: every file `deploytool render` writes for each MATRIX entry, kept under
tests/golden/<entry>/ so that a template change shows as a reviewable diff.

Each entry is rendered in memory, as a bake renders it, without baking: the answers go
through cookiecutter's own context (defaults, derived names), etc/project.json is rendered
from its template, the post-gen hook's PRUNE table removes what the answers exclude, and
the install is a server install at /home/<user>/<domain>/<type>. The programs a config
names (redis-server, postgres, ...) are given Debian's paths, so the files are the same on
every machine, whatever is installed there.

Refresh after a deliberate template change, then review `git diff tests/golden`:

    tests/run.sh tests/unit --refresh-golden
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from .bake import GENERATED, TEMPLATE
from .matrix import MATRIX

GOLDEN = TEMPLATE / "tests" / "golden"
USER = "djltest"  # as the bakes of test_bake
# Where the programs are on Debian 12, whatever this machine has.
DEBIAN_PROGRAMS = {
    "redis-server": "/usr/bin/redis-server",
    "memcached": "/usr/bin/memcached",
    "nginx": "/usr/sbin/nginx",
    "nft": "/usr/sbin/nft",
}
DEBIAN_POSTGRESQL = Path("/usr/lib/postgresql/15/bin")
HOST = (2, 4096)  # cores and MB the golden configs are sized for, whatever this machine has


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cookiecutter_context(answers: dict[str, Any]) -> dict[str, Any]:
    """The `cookiecutter` dict a bake with these answers renders with (--no-input)."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    context = generate_context(str(TEMPLATE / "cookiecutter.json"), extra_context={"user": USER, **answers})
    return {**context["cookiecutter"], **prompt_for_config(context, no_input=True)}


def project_json(answers: dict[str, Any]) -> str:
    from cookiecutter.environment import StrictEnvironment

    template = (GENERATED / "etc" / "project.json").read_text()
    return StrictEnvironment().from_string(template).render(cookiecutter=cookiecutter_context(answers))


@contextmanager
def checkout(entry: str) -> Iterator[Path]:
    """A folder holding what rendering reads of a bake: the answers and the pruned templates."""
    answers = MATRIX[entry]
    folder = Path(tempfile.mkdtemp(prefix=f"dj-layout-golden-{entry}-"))
    try:
        (folder / "etc").mkdir()
        (folder / "etc" / "project.json").write_text(project_json(answers))
        shutil.copytree(GENERATED / "etc" / "templates", folder / "etc" / "templates")
        chosen = json.loads((folder / "etc" / "project.json").read_text())
        hook = _load("dj_layout_post_gen", TEMPLATE / "hooks" / "post_gen_project.py")
        for answer, values in hook.PRUNE.items():
            for name in values[chosen[answer]]:
                path = folder / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        yield folder
    finally:
        shutil.rmtree(folder)


def rendered(entry: str) -> dict[str, str]:
    """Relative path under etc/ -> text, as `deploytool init` and `render` write them for
    ``entry`` (settings_local.py with placeholder secrets)."""
    if str(GENERATED) not in sys.path:
        sys.path.insert(0, str(GENERATED))
    from deploytool import proc, sizing
    from deploytool.init import SETTINGS_LOCAL
    from deploytool.layout import PROJECT_JSON, Install
    from deploytool.project import Project
    from deploytool.render import render_all, render_text

    find, postgresql_bin, host = proc.find, proc.postgresql_bin, sizing.host
    proc.find = lambda name: DEBIAN_PROGRAMS.get(name) or find(name)  # type: ignore[assignment]
    proc.postgresql_bin = lambda name: DEBIAN_POSTGRESQL / name  # type: ignore[assignment]
    sizing.host = lambda: HOST  # type: ignore[assignment]
    try:
        with checkout(entry) as root:
            project = Project.load(root / PROJECT_JSON)
            install_type = MATRIX[entry].get("install_type", "dev")
            install = Install(project, root, install_type)
            where = f"/home/{project.user}/{project.domain}/{install_type}"
            settings = render_text(install, SETTINGS_LOCAL, secret_key="<SECRET_KEY>", db_password="<PASSWORD>")
            install.settings_local.write_text(settings)
            texts = {"settings_local.py": settings}
            texts |= {str(path.relative_to(install.etc_dir)): text for path, (text, _) in render_all(install).items()}
            return {name: text.replace(str(root), where) for name, text in sorted(texts.items())}
    finally:
        proc.find, proc.postgresql_bin, sizing.host = find, postgresql_bin, host  # type: ignore[assignment]


def stored(entry: str) -> dict[str, str]:
    folder = GOLDEN / entry
    return {str(path.relative_to(folder)): path.read_text() for path in sorted(folder.rglob("*")) if path.is_file()}


def refresh(entry: str) -> None:
    folder = GOLDEN / entry
    shutil.rmtree(folder, ignore_errors=True)
    for name, text in rendered(entry).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
