"""The tests' fixtures; what they are made of lives in tests/support/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ensure_project_user, ensure_project_venv


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--refresh-golden",
        action="store_true",
        help="rewrite tests/golden/ from the templates (then review git diff tests/golden)",
    )


@pytest.fixture
def as_root() -> None:
    """A failure, not a skip: running servers as another user needs root (as CI has)."""
    assert os.geteuid() == 0, "this test runs programs as the project user: run tests/run.sh as root"


@pytest.fixture(scope="session")
def project_user() -> str:
    return ensure_project_user()


@pytest.fixture(scope="session")
def project_venv() -> Path:
    return ensure_project_venv()


@pytest.fixture(scope="session")
def bake_project(cookies_session: Any, project_user: str) -> Iterator[Any]:
    """bake(**answers) -> the baked project's path, asserting the bake succeeded."""

    def bake(**answers: Any) -> Path:
        context = {"user": project_user, **answers}
        result = cookies_session.bake(extra_context=context)
        assert result.exit_code == 0, f"bake failed for {context}: {result.exception}"
        return Path(result.project_path)

    yield bake
