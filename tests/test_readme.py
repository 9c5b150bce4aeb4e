"""The README's two commands stay true: the first is run here as a user would, the second
is what CI runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from support import TEMPLATE, Stack, run

README = (TEMPLATE / "README.md").read_text()


def commands() -> list[str]:
    section = README.split("## Two commands on a fresh Debian machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, re.S)


def test_ci_runs_the_readme_test_command() -> None:
    ci = [line for line in (TEMPLATE / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == commands()[1] == "tests/run.sh"


def test_first_command_generates_and_brings_the_stack_up(project_user: str) -> None:
    command = commands()[0]
    apt, _, rest = command.partition(" && ")
    # tests/run.sh installs the packages the README asks for; the rest runs as written.
    packages = apt.split("install -y ", 1)[1].split()
    script = (TEMPLATE / "tests/run.sh").read_text()
    assert all(re.search(rf"^\s+{re.escape(p)}\s", script, re.M) for p in packages), packages
    work = Path(tempfile.mkdtemp(prefix="dj-layout-readme-"))
    try:
        template = work / "dj-layout"
        shutil.copytree(TEMPLATE, template, ignore=shutil.ignore_patterns(".venv", ".git", ".cache", "__pycache__"))
        home = work / "home"
        home.mkdir()
        run(["chown", "-R", f"{project_user}:{project_user}", work])
        rest = rest.replace("gh:org/dj-layout", str(template))
        path = "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"  # a plain user's, not the test runner's
        environment = ["env", f"HOME={home}", f"USER={project_user}", path]
        proc = subprocess.run(
            ["runuser", "-u", project_user, "--", *environment, "bash", "-c", f"set -euo pipefail; cd {home}; {rest}"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        # what `up` does, as it goes: a line per step, the next command at the end
        for step in ("up: venv, requirements, migrate, collectstatic", "up: starting nginx", "next: "):
            assert step in proc.stdout, proc.stdout
        url = re.search(r"up: (https://\S+)", proc.stdout)
        assert url, proc.stdout
        stack = Stack(home / "project_baz", project_user)
        assert url.group(1) == f"https://{stack.site}:{stack.https}/"
        status, _, body = stack.https_get("/")
        assert status == 200 and b"Project Baz" in body
    finally:
        project = home / "project_baz"
        if (project / "env3.11/bin/python").exists():
            subprocess.run(
                ["runuser", "-u", project_user, "--", project / "bin/deploytool", "down"],
                cwd=project,
                capture_output=True,
            )
        shutil.rmtree(work, ignore_errors=True)
