"""An install's life after `up`, for real: `deploytool deploy` of new and of broken revisions,
graceful reloads and log rotation, each under load through nginx (wrk, loopback only,
bounded in time), and a second install type from the same repo beside the first.

Each stack is a baked project made a git checkout that tracks a bare "origin" repo; a second
clone ("work") is where the tests commit and push, as a developer would. Everything runs as
the project user, on the ports of block 64000 (no other test module uses it).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Stack, run, running_stack, tool

BLOCK = 64000
STACKS: dict[str, dict[str, Any]] = {
    "dev-uwsgi-systemd": {},
    "stage-gunicorn-supervisor": {"install_type": "stage", "app_server": "gunicorn", "process_manager": "supervisor"},
}
GIT = ["git", "-c", "user.name=dj-layout tests", "-c", "user.email=tests@dj-layout.invalid"]
HEALTH_TIMEOUT = "5"  # seconds a broken revision's /health/ is given before the rollback

# wrk counts "Non-2xx or 3xx": this script counts every status that is not 200 as a failure.
COUNT_STATUSES = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; other = 0; codes = "" end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else
    other = other + 1
    if #codes < 100 then codes = codes .. status .. " " end
  end
end
function done(summary, latency, requests)
  local o, b, c = 0, 0, ""
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("other"); c = c .. t:get("codes") end
  io.write(string.format("statuses: 200=%d other=%d codes=%s\\n", o, b, c))
end
"""


# ---- load ------------------------------------------------------------------------------------
@dataclass
class Load:
    """What wrk saw: every response counted, every socket error counted."""

    output: str = ""
    requests: int = 0
    ok: int = 0
    other: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def parse(self, output: str) -> None:
        self.output = output
        done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
        statuses = re.search(r"statuses: 200=(\d+) other=(\d+)", output)
        assert done and statuses, f"wrk printed no summary:\n{output}"
        self.requests = int(done.group(1))
        self.seconds = float(done.group(2)) * (60 if done.group(3) == "m" else 1)
        self.ok, self.other = int(statuses.group(1)), int(statuses.group(2))
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
        names = ("connect", "read", "write", "timeout")
        counts = [int(value) for value in errors.groups()] if errors else [0] * len(names)
        self.socket_errors = dict(zip(names, counts, strict=True))

    def assert_nothing_failed(self, least: int = 200) -> None:
        assert self.requests >= least, f"too little load to tell ({self.requests} requests):\n{self.output}"
        assert self.other == 0, f"{self.other} of {self.requests} answers were not 200:\n{self.output}"
        assert not any(self.socket_errors.values()), f"socket errors {self.socket_errors}:\n{self.output}"
        assert self.ok == self.requests, self.output


@contextmanager
def load(stack: Stack, path: str = "/", limit: int = 120) -> Iterator[Load]:
    """wrk on https://<site>/path through nginx while the body runs (2 threads, 8 connections,
    at most ``limit`` seconds); stopped with SIGINT, which makes it print its summary."""
    script = stack.project.parent / "count-statuses.lua"
    script.write_text(COUNT_STATUSES)
    argv = [
        tool("wrk"),
        "-t2",
        "-c8",
        f"-d{limit}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        "-H",
        f"Host: {stack.site}:{stack.https}",
        f"https://127.0.0.1:{stack.https}{path}",
    ]
    result = Load()
    wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.5)  # load before the action ...
        assert wrk.poll() is None, f"wrk exited early: {wrk.communicate()[0]}"
        yield result
        time.sleep(1.5)  # ... and after it
    finally:
        wrk.send_signal(signal.SIGINT)
        try:
            output, _ = wrk.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            wrk.kill()
            output, _ = wrk.communicate()
    result.parse(output)


# ---- the install as a git checkout -----------------------------------------------------------
@dataclass
class Lifecycle:
    stack: Stack
    origin: Path
    work: Path
    slug: str

    def git(self, where: Path, *args: str) -> str:
        return self.stack.as_user(*GIT, "-C", where, *args).stdout.strip()

    def commit(self, message: str, branch: str = "main", **changes: str) -> str:
        """Commit ``changes`` (path relative to the repo -> new text) on ``branch`` (made from
        main when new) in the developer's clone and push it; returns the commit."""
        self.git(self.work, "fetch", "-q", "origin")
        self.git(self.work, "checkout", "-q", "-B", branch, "origin/main")
        for name, text in changes.items():
            path = self.work / name.replace("SLUG", self.slug)
            path.write_text(text)
            shutil.chown(path, self.stack.user, self.stack.user)
        self.git(self.work, "add", "-A")
        self.git(self.work, "commit", "-q", "-m", message)
        self.git(self.work, "push", "-q", "origin", branch)
        return self.git(self.work, "rev-parse", "HEAD")

    def source(self, name: str) -> str:
        """A file of main in the developer's clone."""
        self.git(self.work, "fetch", "-q", "origin")
        self.git(self.work, "checkout", "-q", "-B", "main", "origin/main")
        return (self.work / name.replace("SLUG", self.slug)).read_text()

    def head(self) -> str:
        return self.git(self.stack.project, "rev-parse", "HEAD")

    def deploy(self, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        proc = self.stack.deploytool("deploy", *args, check=False)
        return proc, time.monotonic() - started

    def record(self) -> dict[str, Any]:
        return json.loads((self.stack.project / "data/deploy.json").read_text())


@pytest.fixture(scope="module", params=list(STACKS), ids=list(STACKS))
def lifecycle(request: pytest.FixtureRequest, project_user: str, project_venv: Path) -> Iterator[Lifecycle]:
    answers = {"port_block_start": BLOCK, **STACKS[request.param]}
    with running_stack(project_user, project_venv, **answers) as stack:
        base = stack.project.parent
        origin, work = base / "origin.git", base / "work"
        stack.as_user(*GIT, "init", "-q", "-b", "main")
        stack.as_user(*GIT, "add", "-A")
        stack.as_user(*GIT, "commit", "-q", "-m", "Generated by dj-layout")
        stack.as_user(*GIT, "clone", "-q", "--bare", stack.project, origin)
        stack.as_user(*GIT, "remote", "add", "origin", origin)
        stack.as_user(*GIT, "fetch", "-q", "origin")
        stack.as_user(*GIT, "branch", "-q", "--set-upstream-to", "origin/main")
        stack.as_user(*GIT, "clone", "-q", origin, work)
        yield Lifecycle(stack, origin, work, stack.answers["project_slug"])


def health(stack: Stack) -> str:
    status, _, body = stack.https_get("/health/")
    assert status == 200, body
    return body.decode()


def home(stack: Stack) -> str:
    status, _, body = stack.https_get("/")
    assert status == 200, body[:2000]
    return body.decode()


# ---- deploy ----------------------------------------------------------------------------------
def test_the_local_files_are_ignored_by_git(lifecycle: Lifecycle) -> None:
    """The checkout is clean after `up`: every file the install made is git-ignored."""
    assert lifecycle.git(lifecycle.stack.project, "status", "--porcelain") == ""


def test_deploy_under_load_puts_the_new_revision_live(lifecycle: Lifecycle) -> None:
    stack = lifecycle.stack
    previous = lifecycle.head()
    page = lifecycle.source("SLUG/templates/SLUG/home.html")
    css = lifecycle.source("SLUG/static/SLUG/site.css")
    revision = lifecycle.commit(
        "Release two: a line on the home page, a style",
        **{
            "SLUG/templates/SLUG/home.html": page.replace("</h1>", '</h1>\n  <p id="release">Release two</p>'),
            "SLUG/static/SLUG/site.css": css + "\n#release { font-weight: bold; }\n",
        },
    )
    assert "Release two" not in home(stack)
    with load(stack) as traffic:
        proc, seconds = lifecycle.deploy()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    traffic.assert_nothing_failed()
    print(f"deploy under load: {seconds:.1f} s, {traffic.requests} requests, 0 failed ({traffic.seconds:.1f} s)")

    assert f"{revision[:12]} is live" in proc.stdout
    for step in ("fetch", "checkout", "requirements", "render", "check", "migrate", "collectstatic", "reload"):
        assert re.search(rf"^deploy: {step}\s", proc.stdout, re.M), f"no {step} step:\n{proc.stdout}"
    assert re.search(r"^deploy: requirements\s+unchanged", proc.stdout, re.M)
    production = stack.env["INSTALL_TYPE"] != "dev"
    assert ("check --deploy --fail-level WARNING" in proc.stdout) == production
    assert lifecycle.head() == revision
    assert '<p id="release">Release two</p>' in home(stack)
    assert health(stack) == f"ok {revision[:12]}\n"
    # The new stylesheet under its new hashed name; the old one stays for pages still open.
    manifest = json.loads((stack.project / "static/staticfiles.json").read_text())
    status, _, body = stack.https_get("/static/" + manifest["paths"][f"{lifecycle.slug}/site.css"])
    assert status == 200 and b"#release" in body

    record = lifecycle.record()
    assert record["live"]["revision"] == revision and record["live"]["previous"] == previous
    assert record["history"][0]["result"] == "live"
    status = stack.deploytool("status").stdout
    assert f"revision    {revision[:12]} live since {record['live']['since']}" in status, status
    assert f"template    dj-layout {stack.answers['template_version']}" in status


def test_deploy_installs_requirements_only_when_they_change(lifecycle: Lifecycle) -> None:
    requirements = lifecycle.source("requirements.txt")
    lifecycle.commit("Requirements: a comment", **{"requirements.txt": requirements + "# reviewed\n"})
    proc, _ = lifecycle.deploy()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^deploy: requirements\s+installed", proc.stdout, re.M), proc.stdout
    again, _ = lifecycle.deploy()  # the same revision again: nothing to install
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r"^deploy: requirements\s+unchanged", again.stdout, re.M), again.stdout


FAILING_MIGRATIONS = {
    "SLUG/migrations/0002_visit_note.py": """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("SLUG", "0001_initial")]

    operations = [migrations.AddField("visit", "note", models.CharField(max_length=50, null=True))]
""",
    "SLUG/migrations/0003_fails.py": """from django.db import migrations


def fail(apps, schema_editor):
    raise RuntimeError("this migration fails on purpose")


class Migration(migrations.Migration):
    dependencies = [("SLUG", "0002_visit_note")]

    operations = [migrations.RunPython(fail)]
""",
}


def breakage(lifecycle: Lifecycle, kind: str) -> dict[str, str]:
    """Files of a revision that breaks the app in one way."""
    views = lifecycle.source("SLUG/views.py")
    if kind == "views-import":  # Django's checks import the URLconf, and the views with it
        return {"SLUG/views.py": "import no_such_module_in_this_revision  # noqa\n" + views}
    if kind == "wsgi-import":  # only the app server imports wsgi.py: its reload refuses it
        wsgi = lifecycle.source("SLUG/wsgi.py")
        return {"SLUG/wsgi.py": wsgi + "\nraise ImportError('this revision does not import')\n"}
    if kind == "migration":  # 0002 applies, 0003 fails inside its transaction
        return {name: text.replace("SLUG", lifecycle.slug) for name, text in FAILING_MIGRATIONS.items()}
    assert kind == "health"  # serves pages, but /health/ fails: found after the reload
    return {"SLUG/views.py": views.replace('cursor.execute("SELECT 1")', 'cursor.execute("SELECT no_such_column")')}


@pytest.mark.parametrize(
    ("kind", "step"),
    [("views-import", "check"), ("wsgi-import", "reload"), ("migration", "migrate"), ("health", "health")],
)
def test_a_broken_revision_is_rolled_back_under_load(lifecycle: Lifecycle, kind: str, step: str) -> None:
    stack = lifecycle.stack
    live = lifecycle.head()
    page = home(stack)
    broken = lifecycle.commit(f"A revision that breaks: {kind}", branch=f"broken-{kind}", **breakage(lifecycle, kind))
    with load(stack) as traffic:
        proc, seconds = lifecycle.deploy(f"origin/broken-{kind}", "--health-timeout", HEALTH_TIMEOUT)
    traffic.assert_nothing_failed()
    print(f"rolled back ({kind}) under load: {seconds:.1f} s, {traffic.requests} requests, 0 failed")

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"step {step!r} failed for {broken[:12]}" in proc.stderr, proc.stderr
    assert f"Rolled back: {live[:12]} serves, as before." in proc.stderr, proc.stderr
    assert lifecycle.head() == live
    assert health(stack) == f"ok {live[:12]}\n"
    assert home(stack).split('id="visits">')[0] == page.split('id="visits">')[0]  # the same page
    assert lifecycle.git(stack.project, "status", "--porcelain") == ""
    attempt = lifecycle.record()["history"][0]
    assert (attempt["revision"], attempt["result"], attempt["step"]) == (broken, "rolled back", step)
    status = stack.deploytool("status").stdout
    assert f"{broken[:12]} failed at {step}" in status and f"revision    {live[:12]}" in status, status

    if kind == "wsgi-import":
        assert "does not import" in proc.stderr
    if kind == "migration":
        # The failing migration left nothing behind; the one before it stays (and says so).
        assert "this migration fails on purpose" in proc.stderr
        assert f"stay applied: {lifecycle.slug}.0002_visit_note" in proc.stderr, proc.stderr
        with sqlite3.connect(f"file:{stack.project / 'data/db.sqlite3'}?mode=ro", uri=True) as db:
            query = "SELECT name FROM django_migrations WHERE app = ?"
            names = {row[0] for row in db.execute(query, (lifecycle.slug,))}
            columns = {row[1] for row in db.execute(f"PRAGMA table_info({lifecycle.slug}_visit)")}
        assert {"0001_initial", "0002_visit_note"} <= names and "0003_fails" not in names
        assert "note" in columns  # the old code writes its rows without it


def test_deploy_refuses_uncommitted_changes_and_changes_nothing(lifecycle: Lifecycle) -> None:
    stack = lifecycle.stack
    live = lifecycle.head()
    readme = stack.project / "README.md"
    text = readme.read_text()
    readme.write_text(text + "\nA local edit.\n")
    try:
        proc, _ = lifecycle.deploy()
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "uncommitted changes (README.md)" in proc.stderr and "Nothing was changed" in proc.stderr
        assert lifecycle.head() == live and readme.read_text().endswith("A local edit.\n")
    finally:
        readme.write_text(text)


def test_deploy_of_an_unknown_revision_changes_nothing(lifecycle: Lifecycle) -> None:
    live = lifecycle.head()
    proc, _ = lifecycle.deploy("no-such-branch")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "step 'fetch' failed" in proc.stderr and "'no-such-branch' is not a commit" in proc.stderr, proc.stderr
    assert f"Nothing was changed: {live[:12]} serves" in proc.stderr
    assert lifecycle.head() == live


def test_without_a_remote_the_revision_must_be_named(lifecycle: Lifecycle) -> None:
    stack = lifecycle.stack
    live = lifecycle.head()
    lifecycle.git(stack.project, "remote", "remove", "origin")
    try:
        proc, _ = lifecycle.deploy()
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "this checkout has no remote: name the revision to deploy" in proc.stderr, proc.stderr
        assert lifecycle.head() == live
        named, _ = lifecycle.deploy(live[:12])  # a commit it has: deployed again, no fetch
        assert named.returncode == 0, named.stdout + named.stderr
        assert health(stack) == f"ok {live[:12]}\n"
    finally:
        lifecycle.git(stack.project, "remote", "add", "origin", str(lifecycle.origin))
        lifecycle.git(stack.project, "fetch", "-q", "origin")
        lifecycle.git(stack.project, "branch", "-q", "--set-upstream-to", "origin/main")


# ---- reloads and log rotation ----------------------------------------------------------------
def test_reloads_and_log_rotation_under_load_lose_nothing(lifecycle: Lifecycle) -> None:
    stack = lifecycle.stack
    ctl = stack.project / "bin/uwsgictl.sh"
    logs = stack.project / "logs"
    conf = next((stack.sandbox / "etc/logrotate.d").iterdir())
    with load(stack) as traffic:
        reloads = [stack.as_user(ctl, "reload").stdout]
        if stack.answers["app_server"] == "uwsgi":  # a changed uwsgi.yaml: HUP, which re-reads it
            config = Path(stack.env["APP_CONFIG"])
            time.sleep(1.1)  # mtimes in whole seconds
            stack.as_user("touch", config)
            reloads.append(stack.as_user(ctl, "reload").stdout)
        time.sleep(1)
        stack.as_user(tool("logrotate"), "-s", stack.sandbox / "logrotate.state", "-f", conf)
        time.sleep(1)
        reloads.append(stack.as_user(ctl, "reload").stdout)
    traffic.assert_nothing_failed()
    print(f"reloads {len(reloads)} + logrotate under load: {traffic.requests} requests, 0 failed")
    assert all("reloaded" in out for out in reloads), reloads
    if stack.answers["app_server"] == "uwsgi":
        assert "chain reload" in reloads[0] and "re-read" in reloads[1], reloads
    assert (logs / "nginx.access.log.1").exists()
    marker = f"/?rotated={time.time_ns()}"
    assert stack.https_get(marker)[0] == 200
    deadline = time.monotonic() + 10
    while marker.encode() not in (logs / "nginx.access.log").read_bytes():
        assert time.monotonic() < deadline, "nginx does not write to its new log after the rotation"
        time.sleep(0.2)


# ---- a second install type -------------------------------------------------------------------
def test_a_second_install_type_runs_beside_the_first(lifecycle: Lifecycle, project_venv: Path) -> None:
    first = lifecycle.stack
    # pro: the type no stack of this module is (a port the other stack's clone used stays
    # in TIME_WAIT for a minute, and `up` counts that as taken).
    kind = "pro"
    clone = first.project.parent / kind
    first.as_user(*GIT, "clone", "-q", lifecycle.origin, clone)
    (clone / first.env["VENV"]).symlink_to(project_venv)
    run(["chown", "-h", f"{first.user}:{first.user}", clone / first.env["VENV"]])
    python = clone / first.env["VENV"] / "bin/python"
    run(["runuser", "-u", first.user, "--", python, "-m", "deploytool", "init", "--install-type", kind], cwd=clone)
    second = Stack(clone, first.user)
    try:
        second.deploytool("up")
        second = Stack(clone, first.user)  # env.conf now names its sandbox
        assert second.site == (first.answers["domain"] if kind == "pro" else f"{kind}.{first.answers['domain']}")
        assert second.site != first.site
        for key in ("PROJECT_ROOT", "LOG_DIR", "RUN_DIR", "PIDFILE", "SERVICE"):
            assert first.env[key] != second.env[key], key
        base = int(second.env["BASE_PORT"])
        assert base == BLOCK + (10 if kind == "stage" else 20)
        mine = second.listening()
        assert {int(second.env["PORT_HTTPS"]), int(second.env["PORT_APP"])} <= set(mine)
        assert all(base <= port < base + 10 for port in mine) and not set(mine) & set(first.listening())
        # Both serve at once, each its own database.
        assert first.https_get("/")[0] == 200 and second.https_get("/")[0] == 200
        assert (clone / "data/db.sqlite3").exists() and (first.project / "data/db.sqlite3").exists()
        # The clone tracks origin: a deploy (check --deploy: stage and pro) puts main live there too.
        proc = second.deploytool("deploy", check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "check --deploy --fail-level WARNING" in proc.stdout
        assert health(second) == f"ok {lifecycle.git(lifecycle.origin, 'rev-parse', 'main')[:12]}\n"
        assert first.https_get("/")[0] == 200
    finally:
        second.deploytool("down", check=False)
    assert second.listening() == []
    assert first.https_get("/")[0] == 200
