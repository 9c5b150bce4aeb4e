"""Every rendered config of every MATRIX entry, compared with tests/golden/: a template
change shows up as a diff to review (refresh: tests/run.sh tests/unit --refresh-golden)."""

from __future__ import annotations

import difflib

import pytest
from support import MATRIX
from support.golden import GOLDEN, refresh, rendered, stored


@pytest.mark.parametrize("entry", list(MATRIX))
def test_rendered_configs_match_the_golden_files(entry: str, request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--refresh-golden"):
        refresh(entry)
    now, golden = rendered(entry), stored(entry)
    assert golden, f"no golden files for {entry}: tests/run.sh tests/unit --refresh-golden"
    assert sorted(now) == sorted(golden), f"rendered files of {entry} differ from {GOLDEN / entry}"
    diffs = [
        "".join(difflib.unified_diff(golden[name].splitlines(True), now[name].splitlines(True), name, name))
        for name in now
        if now[name] != golden[name]
    ]
    assert not diffs, (
        "rendered configs differ from tests/golden/ (a deliberate change? tests/run.sh tests/unit "
        "--refresh-golden, then review git diff):\n" + "".join(diffs)[:6000]
    )


def test_every_matrix_entry_has_golden_files() -> None:
    assert sorted(path.name for path in GOLDEN.iterdir()) == sorted(MATRIX)
