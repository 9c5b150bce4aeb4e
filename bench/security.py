"""Security report of the generated repo, for a stage and a pro install, in one table.

    sudo .venv/bin/python -m bench.security

As root, like the tests (it creates their project user `djltest` if needed and runs the
installs as that user). It bakes a stage install (gunicorn, systemd, PostgreSQL) and a pro
install (uWSGI, systemd, SQLite), brings both stacks up with `deploytool up` (ports
64610-64629), commits each generated repo to git as a developer would right after the bake,
then measures, each against its target:

- `manage.py check --deploy --fail-level WARNING`: findings (0);
- `systemd-analyze security --offline=true` on the rendered unit: exposure (<= 2.0);
- sslyze against Mozilla's "intermediate" TLS profile, on the served site: deviations (0);
- shellcheck on the shipped scripts (bin/*.sh, the rendered renewal hook): findings (0);
- the git history of the committed repo searched for the install's secrets (SECRET_KEY, the
  database password, the htpasswd hash, the admin password, the TLS private keys): found (0);
- modes of the local secret files (all 600);
- the bad answers of tests/test_answers.py, each run through the rendered pre-gen hook as
  cookiecutter runs it: rejected with the expected line (all);
- bad command lines given to deploytool and bin/appctl.sh (unknown commands, bad values,
  the wrong user): rejected with a message, no traceback, etc/ unchanged (all).

Prints the table; exits 1 when a target is missed, 0 otherwise.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    TEMPLATE,
    VENV_NAME,
    Stack,
    as_user,
    bake,
    local_settings,
    prepare,
    stack_up,
    table,
    tool,
)

BLOCK = 64600  # stage 64610-64619, pro 64620-64629
INSTALLS: dict[str, dict[str, str]] = {
    "stage": {
        "install_type": "stage",
        "app_server": "gunicorn",
        "process_manager": "systemd",
        "database": "postgresql",
    },
    "pro": {"install_type": "pro", "app_server": "uwsgi", "process_manager": "systemd"},
}
GIT = ["git", "-c", "user.name=dj-layout report", "-c", "user.email=report@dj-layout.invalid"]
MAX_EXPOSURE = 2.0
VERBOSE = "--verbose" in sys.argv[1:]  # each bad command line and what it answered


@dataclass
class Row:
    check: str
    install: str
    result: str
    target: str
    held: bool


# ---- per install ---------------------------------------------------------------------------------
def check_deploy(stack: Stack) -> Row:
    python = stack.project / VENV_NAME / "bin/python"
    proc = as_user(stack.user, python, "manage.py", "check", "--deploy", "--fail-level", "WARNING", cwd=stack.project)
    out = proc.stdout + proc.stderr
    found = re.search(r"identified (\d+) issues?", out)
    findings = int(found.group(1)) if found else (0 if "identified no issues" in out else -1)
    codes = sorted(set(re.findall(r"\((\w+\.[WE]\d+)\)", out)))
    silenced = re.search(r"\((\d+) silenced\)", out)
    result = (
        "no output to read" if findings < 0 else f"{findings} findings" + (f" ({', '.join(codes)})" if codes else "")
    )
    if silenced and silenced.group(1) != "0":
        result += f", {silenced.group(1)} silenced"
    return Row("manage.py check --deploy --fail-level WARNING", "", result, "0", findings == 0 and proc.returncode == 0)


def systemd_exposure(stack: Stack) -> Row:
    """Every rendered unit (the app server's, the dedicated servers'): the worst exposure counts."""
    levels = {}
    for unit in sorted((stack.project / "etc/systemd/system").glob("*.service")):
        proc = subprocess.run(
            [tool("systemd-analyze"), "security", "--offline=true", str(unit)], capture_output=True, text=True
        )
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
        if not found:
            what = f"unreadable ({unit.name}): {proc.stderr.strip()[:80]}"
            return Row("systemd-analyze security --offline=true", "", what, "", False)
        levels[unit.name.removeprefix(f"{stack.site}_").removesuffix(".service")] = float(found.group(1))
    worst = max(levels.values(), default=99.0)
    return Row(
        "systemd-analyze security --offline=true, each unit",
        "",
        ", ".join(f"{name} {level:.1f}" for name, level in levels.items()) or "no unit",
        f"<= {MAX_EXPOSURE}",
        worst <= MAX_EXPOSURE,
    )


def tls_profile(stack: Stack) -> Row:
    """sslyze's Mozilla "intermediate" check of the site as served (trusting the sandbox CA)."""
    target = f"{stack.site}:{stack.https}"
    argv = [sys.executable, "-m", "sslyze", "--mozilla_config=intermediate", "--certinfo_ca_file", str(stack.ca)]
    proc = subprocess.run([*argv, f"{target}{{127.0.0.1}}"], capture_output=True, text=True, timeout=300)
    out = proc.stdout
    if f"{target}: OK - Compliant." in out:
        deviations, detail = 0, ""
    elif f"{target}: FAILED - Not compliant." in out:
        issues = re.findall(r"^\s+\* (\w+): ", out.split("FAILED - Not compliant.", 1)[1], re.M)
        deviations, detail = len(issues), f" ({', '.join(issues)})"
    else:
        deviations, detail = -1, f": scan did not complete ({(out + proc.stderr).strip()[-200:]})"
    result = "no result" + detail if deviations < 0 else f"{deviations} deviations{detail}"
    return Row("TLS vs Mozilla intermediate (sslyze)", "", result, "0", deviations == 0)


def shellcheck(stack: Stack) -> Row:
    scripts = sorted(stack.project.glob("bin/*.sh")) + sorted((stack.project / "etc").rglob("*.sh"))
    proc = subprocess.run(
        [tool("shellcheck"), "-x", "-f", "gcc", *map(str, scripts)],
        capture_output=True,
        text=True,
        cwd=stack.project,
    )
    findings = [line for line in proc.stdout.splitlines() if line.strip()]
    names = ", ".join(str(path.relative_to(stack.project)) for path in scripts)
    return Row(f"shellcheck ({names})", "", f"{len(findings)} findings", "0", not findings and proc.returncode == 0)


def secrets_of(stack: Stack) -> dict[str, str]:
    """The install's secrets, as text that must never reach git."""
    settings = local_settings(stack.project)
    found = {"SECRET_KEY": str(settings["SECRET_KEY"])}
    database = settings["DATABASES"]["default"]
    if database.get("PASSWORD"):
        found["database password"] = str(database["PASSWORD"])
    htpasswd = stack.project / "etc/htpasswd"
    if htpasswd.exists():
        found["htpasswd hash"] = htpasswd.read_text().split(":", 1)[1].strip()
    password = stack.project / "etc/admin_password"
    if password.exists():
        found["admin password"] = password.read_text().split(":", 1)[1].strip()
    for key in (stack.sandbox / "etc/ssl").rglob("*.key"), (stack.sandbox / "etc/ssl").rglob("privkey.pem"):
        for path in key:
            body = "".join(line for line in path.read_text().splitlines() if not line.startswith("-----"))
            found[f"TLS key {path.name}"] = body[-40:]  # a piece of the key's base64 body
    return found


def commit(stack: Stack) -> None:
    """What a developer does with a fresh bake: put it all in git."""
    stack.as_user(*GIT, "init", "-q", "-b", "main")
    stack.as_user(*GIT, "add", "-A")
    stack.as_user(*GIT, "commit", "-q", "-m", "Generated by dj-layout")


def secrets_in_history(stack: Stack) -> Row:
    history = stack.as_user("git", "log", "--all", "-p", "--format=%H %s%n%b").stdout
    files = stack.as_user("git", "ls-files").stdout.splitlines()
    secrets = secrets_of(stack)
    leaked = [name for name, value in secrets.items() if value and value in history]
    result = f"{len(leaked)} of {len(secrets)} found in {len(files)} committed files"
    if leaked:
        result += f" ({', '.join(leaked)})"
    return Row("secrets in git history after bake + commit", "", result, "0", not leaked and len(files) > 0)


def secret_modes(stack: Stack) -> Row:
    ssl = stack.sandbox / "etc/ssl"
    files = [
        stack.project / "etc/settings_local.py",
        stack.project / "etc/htpasswd",
        stack.project / "etc/admin_password",
        stack.sandbox / "etc/nginx/htpasswd" / stack.site,
        *sorted(ssl.rglob("*.key")),
        *sorted(ssl.rglob("privkey.pem")),
    ]
    present = [path for path in files if path.exists()]
    wrong = [f"{path.name} {path.stat().st_mode & 0o777:o}" for path in present if path.stat().st_mode & 0o777 != 0o600]
    result = f"{len(present)} files, " + (f"not 600: {', '.join(wrong)}" if wrong else "all 600")
    return Row("modes of local secret files", "", result, "600", not wrong and len(present) >= 4)


def outsider_probes(stack: Stack) -> Row:
    """What tests/test_stack.py's attacks try, as nobody: the app server (uwsgi exec packet or
    /admin/ straight to gunicorn) on its socket and port, the stats, the caches, PostgreSQL's
    socket, and reading the secrets, the TLS key, the database and the logs."""
    from tests.support.probes import attempt, exec_packet, http_get

    env = stack.env
    marker = Path(tempfile.gettempdir()) / f"dj-layout-report-{stack.site}-outsider-ran"
    packet = exec_packet(marker) if env["APP_SERVER"] == "uwsgi" else http_get("/admin/", stack.site)
    run_dir = Path(env["RUN_DIR"])
    expected: list[tuple[tuple[str, str | Path, str], str]] = [
        (("unix", env["APP_SOCKET"], packet), "EACCES"),
        (("tcp", env["PORT_APP"], packet), "ECONNREFUSED"),
        (("read", stack.project / "etc/settings_local.py", ""), "EACCES"),
        (("read", stack.project / "etc/htpasswd", ""), "EACCES"),
        (("read", stack.sandbox / f"etc/ssl/sandbox/{stack.site}/privkey.pem", ""), "EACCES"),
        (("read", Path(env["LOG_DIR"]) / "nginx.access.log", ""), "EACCES"),
        (("list", stack.project, ""), "EACCES"),
    ]
    if env["APP_SERVER"] == "uwsgi":
        expected += [(("unix", env["STATS_SOCKET"], ""), "EACCES"), (("tcp", env["PORT_STATS"], ""), "ECONNREFUSED")]
    if (stack.project / "data/db.sqlite3").exists():
        expected.append((("read", stack.project / "data/db.sqlite3", ""), "EACCES"))
    if (stack.project / "data/postgresql").exists():
        expected.append((("unix", run_dir / f".s.PGSQL.{env['PORT_POSTGRESQL']}", ""), "EACCES"))
    seen = attempt([probe for probe, _ in expected])
    failed = [f"{probe[0]} {probe[1]}: {got}" for (probe, want), got in zip(expected, seen, strict=True) if got != want]
    if marker.exists():
        failed.append(f"{marker} was created")
    result = f"{len(expected) - len(failed)} of {len(expected)} refused" + (
        f"; got in: {'; '.join(failed)}" if failed else ""
    )
    return Row("probes by another account (nobody) refused", "", result, "all", not failed)


def open_files(stack: Stack) -> Row:
    """Files the running stack made that another account could read: under data/, media/, the
    logs and the run dir, all made with umask 0027 (the SQLite file 600). etc/'s secrets have
    their own row; its rendered configs are no secret (and etc/ itself is 0700)."""
    env = stack.env
    folders = [stack.project / "data", stack.project / "media", Path(env["LOG_DIR"]), Path(env["RUN_DIR"])]
    # Pid files aside: gunicorn chmods its own to 644, and a pid is no secret (the run dir is 0750).
    files = [
        path
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file() and not path.is_symlink() and path.suffix != ".pid"
    ]
    open_ = [str(path) for path in files if path.stat().st_mode & 0o007]
    database = stack.project / "data/db.sqlite3"
    if database.exists() and database.stat().st_mode & 0o777 != 0o600:
        open_.append(f"{database} {database.stat().st_mode & 0o777:o}")
    result = f"{len(open_)} of {len(files)} open to others" + (f" ({', '.join(open_)[:300]})" if open_ else "")
    return Row("install files readable by other accounts", "", result, "0", not open_ and len(files) > 5)


# ---- bad input ----------------------------------------------------------------------------------
def bad_answers() -> Row:
    """Every bad answer of tests/test_answers.py through the pre-gen hook, rendered and run
    the way cookiecutter runs it: rejected, with the line that test expects."""
    from cookiecutter.utils import create_env_with_context

    from tests import test_answers

    hook = TEMPLATE / "hooks" / "pre_gen_project.py"
    rejected, wrong = 0, []
    with tempfile.TemporaryDirectory(prefix="dj-layout-hook-") as tmp:
        for extra, line in test_answers.BAD:
            context: dict[str, Any] = {"cookiecutter": test_answers.answers(**extra)}
            script = Path(tmp) / "pre_gen_project.py"
            script.write_text(create_env_with_context(context).from_string(hook.read_text()).render(**context))
            proc = subprocess.run([sys.executable, str(script)], cwd=tmp, capture_output=True, text=True)
            lines = proc.stderr.splitlines()
            if proc.returncode != 0 and len(lines) == 1 and lines[0].startswith(line):
                rejected += 1
            else:
                wrong.append(f"{extra}: exit {proc.returncode}, {lines}")
    total = len(test_answers.BAD)
    result = f"{rejected} of {total}" + (f"; not rejected: {'; '.join(wrong)[:300]}" if wrong else "")
    return Row("bad answers rejected by the pre-gen hook (test_answers.BAD)", "", result, "all", rejected == total > 0)


def tree_digest(folder: Path) -> str:
    """Contents, modes and owners of every file under folder: what a refused command must not change."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            digest.update(f"{path}:{info.st_mode}:{info.st_uid}:".encode() + path.read_bytes())
    return digest.hexdigest()


def bad_command_lines(stack: Stack) -> Row:
    """Bad command lines to deploytool and bin/appctl.sh, by the project user or by root:
    each must exit non-zero with a message (no traceback) and leave etc/ as it was."""
    python = str(stack.project / VENV_NAME / "bin/python")
    deploytool = [python, "-m", "deploytool"]
    ctl = str(stack.project / "bin/appctl.sh")
    user = ["runuser", "-u", stack.user, "--"]
    cases: list[tuple[str, list[str]]] = [
        ("no command", [*user, *deploytool]),
        ("unknown command", [*user, *deploytool, "bogus"]),
        ("init --install-type bogus", [*user, *deploytool, "init", "--install-type", "bogus"]),
        ("init --install-type 'pro; id'", [*user, *deploytool, "init", "--install-type", "pro; id"]),
        ("init of another type in this checkout", [*user, *deploytool, "init", "--install-type", "stage"]),
        ("install --part bogus", [*user, *deploytool, "install", "--part", "bogus"]),
        ("cert --server http://…", [*user, *deploytool, "cert", "--server", "http://acme.invalid/directory"]),
        ("cert --email 'not an address'", [*user, *deploytool, "cert", "--email", "not an address"]),
        ("cert --ca-bundle missing.pem", [*user, *deploytool, "cert", "--ca-bundle", "/nonexistent/ca.pem"]),
        ("deploy --health-timeout soon", [*user, *deploytool, "deploy", "--health-timeout", "soon"]),
        ("deploy of an unknown revision", [*user, *deploytool, "deploy", "no-such-revision"]),
        ("--root of no install", [*user, *deploytool, "--root", "/nonexistent", "ports"]),
        ("up as root", [*deploytool, "up"]),
        ("deploy as root", [*deploytool, "deploy"]),
        ("install --part user as root", [*deploytool, "install", "--part", "user"]),
        ("appctl.sh with no command", [*user, ctl]),
        ("appctl.sh bogus", [*user, ctl, "bogus"]),
        ("appctl.sh 'status;id'", [*user, ctl, "status;id"]),
        ("appctl.sh start as root", [ctl, "start"]),
        ("appctl.sh reload as root", [ctl, "reload"]),
    ]
    rejected, wrong = 0, []
    for name, argv in cases:
        before = tree_digest(stack.project / "etc")
        proc = subprocess.run(argv, cwd=stack.project, capture_output=True, text=True, timeout=120)
        said = (proc.stderr + proc.stdout).strip()
        changed = tree_digest(stack.project / "etc") != before
        if proc.returncode != 0 and said and "Traceback" not in said and not changed:
            rejected += 1
        else:
            wrong.append(f"{name}: exit {proc.returncode}{', etc/ changed' if changed else ''}, {said[-120:]!r}")
        if VERBOSE:
            print(f"  {name}: exit {proc.returncode}: {said.splitlines()[-1] if said else ''}"[:200], flush=True)
    result = f"{rejected} of {len(cases)}" + (f"; accepted: {'; '.join(wrong)[:400]}" if wrong else "")
    return Row("bad command lines rejected (deploytool, appctl.sh)", "", result, "all", rejected == len(cases))


# ---- the report ------------------------------------------------------------------------------------
def installs(user: str, venv: Path, stacks: ExitStack) -> Iterator[tuple[str, Stack]]:
    for name, answers in INSTALLS.items():
        baked = bake(user, venv, port_block_start=BLOCK, **answers)
        stacks.callback(shutil.rmtree, baked.project.parent, True)  # even if `up` never ran
        stack, _seconds = stacks.enter_context(stack_up(baked))
        commit(stack)
        yield name, stack


def report() -> list[Row]:
    programs = ["nginx", "git", "openssl", "systemd-analyze", "initdb"]
    user, venv = prepare("security.py", programs, list(range(BLOCK + 10, BLOCK + 30)), "security report")
    rows: list[Row] = []
    with ExitStack() as stacks:
        for name, stack in installs(user, venv, stacks):
            checks = (check_deploy, systemd_exposure, tls_profile, shellcheck, secrets_in_history, secret_modes)
            for check in (*checks, outsider_probes, open_files):
                row = check(stack)
                row.install = name
                rows.append(row)
            if name == "pro":
                row = bad_command_lines(stack)
                row.install = name
                rows.append(row)
    rows.append(bad_answers())
    order = [row.check.split(" (")[0] for row in rows]  # rows of one check together
    rows.sort(key=lambda row: order.index(row.check.split(" (")[0]))
    return rows


def main() -> int:
    started = time.monotonic()
    rows = report()
    print(
        table(
            ["check", "install", "result", "target", "held"],
            [[r.check, r.install or "-", r.result, r.target, "yes" if r.held else "MISSED"] for r in rows],
        )
    )
    missed = [row for row in rows if not row.held]
    print(f"\n{len(rows) - len(missed)} of {len(rows)} targets held ({time.monotonic() - started:.0f} s)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
