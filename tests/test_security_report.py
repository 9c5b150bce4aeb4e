"""bench/security.py, the security report the README documents, runs as written and every
target holds: it exits 0 and its table has a row per check and install, each held."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import TEMPLATE

pytestmark = pytest.mark.usefixtures("as_root")

# (check, install) of every row the report prints.
ROWS = [
    *[
        (check, install)
        for check in (
            "manage.py check --deploy --fail-level WARNING",
            "systemd-analyze security --offline=true",
            "TLS vs Mozilla intermediate (sslyze)",
            "shellcheck",
            "secrets in git history after bake + commit",
            "modes of local secret files",
            "probes by another account (nobody) refused",
            "install files readable by other accounts",
        )
        for install in ("stage", "pro")
    ],
    ("bad command lines rejected (deploytool, appctl.sh)", "pro"),
    ("bad answers rejected by the pre-gen hook (test_answers.BAD)", "-"),
]


def test_security_report_holds_every_target(project_user: str, project_venv: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.security"],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=TEMPLATE,
    )
    seconds = time.monotonic() - started
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("check "))
    table = lines[header + 2 : header + 2 + len(ROWS)]
    for (check, install), line in zip(ROWS, table, strict=True):
        cells = re.split(r"\s{2,}", line.strip())
        assert cells[0].startswith(check) and cells[1] == install, (check, install, line)
        assert cells[-1] == "yes", line
    assert re.search(rf"^{len(ROWS)} of {len(ROWS)} targets held", proc.stdout, re.M), proc.stdout[-1000:]
    assert seconds < 120, f"the report took {seconds:.0f} s: it must stay under 2 minutes"
