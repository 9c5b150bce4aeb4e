"""The template's version: one number, bumped by bump2version, recorded in every bake."""

from __future__ import annotations

import json
import re
from typing import Any

import tomllib
from support import TEMPLATE, run, tool


def versions() -> dict[str, str]:
    bumpversion = re.search(r"^current_version = (\S+)$", (TEMPLATE / ".bumpversion.cfg").read_text(), re.M)
    assert bumpversion
    return {
        ".bumpversion.cfg": bumpversion.group(1),
        "pyproject.toml": tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["project"]["version"],
        "cookiecutter.json": json.loads((TEMPLATE / "cookiecutter.json").read_text())["_template_version"],
    }


def test_one_version_everywhere() -> None:
    assert len(set(versions().values())) == 1, versions()


def test_bump2version_bumps_every_file() -> None:
    current = versions()["pyproject.toml"]
    major, minor, patch = map(int, current.split("."))
    proc = run(
        [tool("bump2version"), "--dry-run", "--allow-dirty", "--no-commit", "--no-tag", "--list", "--verbose", "patch"],
        cwd=TEMPLATE,
    )
    assert f"new_version={major}.{minor}.{patch + 1}" in proc.stdout
    for name in ("pyproject.toml", "cookiecutter.json"):
        assert f"Would add changes in file '{name}'" in proc.stderr, name


def test_bakes_record_the_template_version(bake_project: Any) -> None:
    project = bake_project()
    recorded = json.loads((project / "etc/project.json").read_text())["template_version"]
    assert recorded == versions()["cookiecutter.json"]
