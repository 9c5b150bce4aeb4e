"""The stack for real: `deploytool up` as the project user, then what a user checks with
a browser, curl and the servers' own clients. Only loopback, only the install's ports."""

from __future__ import annotations

import base64
import datetime
import email
import gzip
import hashlib
import http.client
import json
import os
import pwd
import queue
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import BLOCKS, STACKS, Stack, local_settings, run, running_stack, tool, wait_until
from support.probes import ATTACKER, exec_packet, http_get
from support.probes import attempt as probe
from support.wrkload import under_load, wrk_argv

BLOCK = BLOCKS["stack"]


@pytest.fixture(scope="module", params=list(STACKS), ids=list(STACKS))
def stack(request: pytest.FixtureRequest, project_user: str, project_venv: Path) -> Iterator[Stack]:
    answers = {"port_block_start": BLOCK, **STACKS[request.param]}
    with running_stack(project_user, project_venv, **answers) as running:
        yield running


def app_pid(stack: Stack) -> int:
    proc = stack.as_user(stack.project / "bin/appctl.sh", "status", check=False)
    match = re.search(r"pid (\d+)", proc.stdout)
    assert proc.returncode == 0 and match, proc.stdout + proc.stderr
    return int(match.group(1))


# ---- HTTPS through nginx ---------------------------------------------------------------------


def test_page_over_https_for_the_domain(stack: Stack) -> None:
    status, _, body = stack.https_get("/")
    assert status == 200
    assert b"Visits:" in body and b'<span id="secure">True</span>' in body


def test_http_redirects_to_https_keeping_path_and_query(stack: Stack) -> None:
    status, headers, _ = stack.http_request("GET", "/some/path/?a=1&b=two")
    assert status in (301, 308)
    assert headers["location"] == f"https://{stack.site}:{stack.https}/some/path/?a=1&b=two"


def test_one_canonical_name(stack: Stack) -> None:
    """pro answers www.<domain> too, with a redirect to the canonical name (path and query
    kept); the other installs have no www name, and nginx gives it no answer at all."""
    www = f"www.{stack.site}"
    if stack.env["INSTALL_TYPE"] == "pro":
        status, headers, _ = stack.https_get("/a/b?c=d", host=www)
        assert status == 308 and headers["location"] == f"https://{stack.site}:{stack.https}/a/b?c=d", headers
        status, headers, _ = stack.http_request("GET", "/a?b=c", headers={"Host": www})
        assert status == 308 and headers["location"] == f"https://{stack.site}:{stack.https}/a?b=c", headers
    else:
        with pytest.raises((OSError, http.client.HTTPException)):
            stack.https_get("/", host=www)


def test_acme_challenge_is_served_on_http(stack: Stack) -> None:
    webroot = stack.sandbox / "var/www/letsencrypt/.well-known/acme-challenge"
    webroot.mkdir(parents=True, exist_ok=True)
    (webroot / "token-123").write_text("token-123.thumbprint")
    status, _, body = stack.http_request("GET", "/.well-known/acme-challenge/token-123")
    assert (status, body) == (200, b"token-123.thumbprint")


def test_unknown_host_gets_no_django_page(stack: Stack) -> None:
    for attempt in (
        lambda: stack.https_get("/", host="attacker.example"),
        lambda: stack.http_request("GET", "/", headers={"Host": "attacker.example"}),
    ):
        try:
            status, _, body = attempt()
        except (ConnectionError, OSError):
            continue  # nginx closed the connection (444): no page at all
        assert b"Visits" not in body and status != 200


def test_spoofed_forwarded_proto_is_overwritten(stack: Stack) -> None:
    # Over plain HTTP nginx answers itself (a redirect): the claim never reaches Django.
    status, _, body = stack.http_request("GET", "/", headers={"X-Forwarded-Proto": "https"})
    assert status in (301, 308) and b"Visits" not in body
    # Over HTTPS, a client's "http" is replaced by nginx's own $scheme as well.
    status, _, body = stack.https_get("/", headers={"X-Forwarded-Proto": "http"})
    assert status == 200 and b'<span id="secure">True</span>' in body


def test_security_headers(stack: Stack) -> None:
    _, headers, _ = stack.https_get("/")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"]
    production = stack.env["INSTALL_TYPE"] != "dev"
    hsts = headers.get("strict-transport-security", "")
    assert ("max-age=63072000" in hsts) == production


# ---- static and media served by nginx --------------------------------------------------------


def hashed_css(stack: Stack) -> str:
    manifest = json.loads((stack.project / "static/staticfiles.json").read_text())
    slug = stack.answers["project_slug"]
    return "/static/" + manifest["paths"][f"{slug}/site.css"]


def app(stack: Stack, command: str) -> None:
    """Start or stop the app server as its process manager does it."""
    if stack.answers["process_manager"] == "supervisor":
        conf = stack.project / "etc/supervisor/supervisord.conf"
        stack.as_user("supervisorctl", "-c", conf, command, stack.env["SERVICE"])
    else:
        stack.as_user(stack.project / "bin/appctl.sh", command)


def test_static_is_served_by_nginx_with_long_cache_and_gzip(stack: Stack) -> None:
    path = hashed_css(stack)
    app(stack, "stop")
    try:
        assert stack.https_get("/")[0] == 503  # the app is down: the maintenance page ...
        status, headers, body = stack.https_get(path, headers={"Accept-Encoding": "gzip"})
        assert status == 200  # ... and nginx still serves the static file
        assert "max-age=31536000" in headers["cache-control"]
        assert headers.get("content-encoding") == "gzip"
        assert b"font-family" in gzip.decompress(body)
    finally:
        app(stack, "start")
    wait_until(lambda: stack.https_get("/")[0] == 200, "the site answering after the app's start")


def test_media_is_served_by_nginx(stack: Stack) -> None:
    (stack.project / "media/hello.txt").write_text("uploaded\n")
    status, _, body = stack.https_get("/media/hello.txt")
    assert (status, body) == (200, b"uploaded\n")


def test_upload_over_the_limit_gets_413(stack: Stack) -> None:
    context = ssl.create_default_context(cafile=str(stack.ca))
    raw = socket.create_connection(("127.0.0.1", stack.https), timeout=10)
    with context.wrap_socket(raw, server_hostname=stack.site) as tls:
        size = 21 * 1024 * 1024
        tls.sendall(
            f"POST / HTTP/1.1\r\nHost: {stack.site}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = tls.recv(200)
    assert answer.startswith(b"HTTP/1.1 413"), answer


# ---- admin behind basic auth -----------------------------------------------------------------


def test_admin_behind_basic_auth(stack: Stack) -> None:
    assert stack.answers["admin_basic_auth"] is True
    status, headers, _ = stack.https_get("/admin/")
    assert status == 401 and "basic" in headers["www-authenticate"].lower()
    credentials = (stack.project / "etc/admin_password").read_text().strip()
    auth = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
    status, headers, _ = stack.https_get("/admin/", headers=auth)
    assert status == 302 and "/admin/login/" in headers["location"]
    status, _, body = stack.https_get("/admin/login/?next=/admin/", headers=auth)
    assert status == 200 and b"Django administration" in body
    for secret in (stack.project / "etc/htpasswd", stack.sandbox / f"etc/nginx/htpasswd/{stack.site}"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600


# ---- database and cache ----------------------------------------------------------------------


def test_database_reads_and_writes(stack: Stack) -> None:
    counts = []
    for _ in range(2):
        _, _, body = stack.https_get("/")
        counts.append(int(re.search(rb'id="visits">(\d+)<', body).group(1)))  # type: ignore[union-attr]
    assert counts[1] == counts[0] + 1
    settings = (stack.project / "etc/settings_local.py").read_text()
    if stack.answers["database"] == "postgresql":
        assert '"HOST": "127.0.0.1"' in settings and f'"PORT": "{stack.env["PORT_POSTGRESQL"]}"' in settings
        assert (stack.project / "data/postgresql/PG_VERSION").exists()
        assert int(stack.env["PORT_POSTGRESQL"]) in stack.listening()
    else:
        assert (stack.project / "data/db.sqlite3").stat().st_size > 0


def test_cache_round_trips_through_the_dedicated_server(stack: Stack) -> None:
    cache = stack.answers["cache"]
    if cache == "none":
        assert not {int(stack.env["PORT_REDIS"]), int(stack.env["PORT_MEMCACHED"])} & set(stack.listening())
        return
    code = "from django.core.cache import cache; cache.set('probe', 'from-django', 60); print(cache.make_key('probe'))"
    key = stack.as_user(stack.project / "env3.11/bin/python", "manage.py", "shell", "-c", code).stdout.split()[-1]
    sock = Path(stack.env["RUN_DIR"]) / f"{cache}.sock"  # no TCP: a unix socket, the user's only
    assert not {int(stack.env["PORT_REDIS"]), int(stack.env["PORT_MEMCACHED"])} & set(stack.listening())
    if cache == "redis":
        raw = subprocess.run(
            [tool("redis-cli"), "-s", sock, "--raw", "GET", key], capture_output=True, check=True
        ).stdout
        assert b"from-django" in raw  # pickled by Django: the string is inside
    else:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(5)
            conn.connect(str(sock))
            conn.sendall(f"get {key}\r\n".encode())
            answer = conn.recv(4096)
        assert answer.startswith(b"VALUE ") and b"from-django" in answer


# ---- process management ----------------------------------------------------------------------


def test_supervisord_restarts_a_crash_but_not_a_stop(stack: Stack) -> None:
    if stack.answers["process_manager"] != "supervisor":
        assert not (stack.sandbox / "etc/supervisor").exists()
        return
    supervisorctl = ["supervisorctl", "-c", stack.project / "etc/supervisor/supervisord.conf"]
    pid = app_pid(stack)
    os.kill(pid, 9)
    wait_until(
        lambda: (
            stack.as_user(stack.project / "bin/appctl.sh", "status", check=False).returncode == 0
            and app_pid(stack) != pid
        ),
        "supervisord restarting the app after kill -9",
    )
    # supervisord counts the program as started after startsecs; only then is an exit final.
    program = [*supervisorctl, "status", stack.env["SERVICE"]]  # the app's (a worker may run beside it)
    wait_until(lambda: "RUNNING" in stack.as_user(*program, check=False).stdout, "state RUNNING")
    assert stack.https_get("/")[0] == 200
    stack.as_user(stack.project / "bin/appctl.sh", "stop")  # a stop by hand
    time.sleep(7)  # longer than startsecs: a restart would have happened by now
    assert stack.as_user(stack.project / "bin/appctl.sh", "status", check=False).returncode == 3
    state = stack.as_user(*program, check=False).stdout
    assert re.search(r"\b(STOPPED|EXITED)\b", state), state
    # A start by hand puts it back under the install's own supervisord (the user's socket).
    started = stack.as_user(stack.project / "bin/appctl.sh", "start").stdout
    assert "started under supervisor" in started, started
    state = stack.as_user(*program, check=False).stdout
    assert "RUNNING" in state and f"pid {app_pid(stack)}," in state, state
    wait_until(lambda: stack.https_get("/")[0] == 200, "the site answering after a start by hand")


def test_status_tells_what_runs(stack: Stack) -> None:
    lines = stack.deploytool("status").stdout
    assert re.search(r"app server\s+running", lines) and re.search(r"nginx\s+running", lines)
    for service in ("postgresql", "redis", "memcached"):
        chosen = service in (stack.answers["database"], stack.answers["cache"])
        assert (re.search(rf"{service}\s+running", lines) is not None) == chosen


# ---- backups ---------------------------------------------------------------------------------
# What the visits table holds, read through Django as the site reads it.
VISITS = (
    "from {slug}.models import Visit; import json; "
    "print(json.dumps([[v.id, v.at.isoformat()] for v in Visit.objects.order_by('id')]))"
)


def visits(stack: Stack) -> list[list[object]]:
    code = VISITS.format(slug=stack.answers["project_slug"])
    out = stack.as_user(
        stack.project / stack.env["VENV"] / "bin/python", "manage.py", "shell", "--no-imports", "-c", code
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def media_hashes(stack: Stack) -> dict[str, str]:
    media = stack.project / "media"
    return {
        str(f.relative_to(media)): hashlib.sha256(f.read_bytes()).hexdigest() for f in media.rglob("*") if f.is_file()
    }


def backup_name(output: str) -> str:
    match = re.search(r"^backup: (\S+): [\d.]+ [KMG]?B in ", output, re.M)
    assert match, output
    return match.group(1)


def destroy_data(stack: Stack) -> None:
    """What a bad day does: the visits table dropped (PostgreSQL) or the SQLite file
    truncated, and the uploads deleted."""
    if stack.answers["database"] == "postgresql":
        db = local_settings(stack.project)["DATABASES"]["default"]
        psql = [tool("psql"), "-h", db["HOST"], "-p", str(db["PORT"]), "-U", db["USER"], "-d", db["NAME"]]
        stack.as_user(
            "env", f"PGPASSWORD={db['PASSWORD']}", *psql, "-qc", f"DROP TABLE {stack.answers['project_slug']}_visit"
        )
    else:
        os.truncate(stack.project / "data/db.sqlite3", 0)
    shutil.rmtree(stack.project / "media/uploads")
    assert stack.https_get("/")[0] == 500  # the site is broken now


def test_backup_under_load_and_restore_byte_identical(stack: Stack) -> None:
    uploads = stack.project / "media/uploads"
    stack.as_user("mkdir", "-p", uploads)
    for name, size in (("photo.jpg", 300_000), ("notes.txt", 1200)):
        stack.as_user("dd", "if=/dev/urandom", f"of={uploads / name}", f"bs={size}", "count=1", "status=none")
    host = f"{stack.site}:{stack.https}"
    argv = wrk_argv(tool("wrk"), f"https://127.0.0.1:{stack.https}/", host, stack.project.parent / "count.lua", 60)
    with under_load(argv) as seen:  # GET / writes a row each: the site writes during the backup
        during = stack.deploytool("backup").stdout
    seen.assert_nothing_failed(least=50)
    assert "dumped the" in during and "next: to restore it" in during, during
    busy = backup_name(during)
    # The moment to compare with: no writer now, then a backup of exactly this.
    rows, files = visits(stack), media_hashes(stack)
    assert len(rows) >= seen.ok and files
    quiet = backup_name(stack.deploytool("backup", "--label", "quiet").stdout)
    listed = stack.deploytool("backups").stdout
    assert re.search(rf"^{quiet} .* verifies$", listed, re.M) and re.search(rf"^{busy} .* verifies$", listed, re.M), (
        listed
    )
    # Unchanged uploads cost nothing the second time: the same inode, linked.
    backups = stack.project / "backups"  # the link to the install's backup folder
    photo = [(backups / name / "media/uploads/photo.jpg").stat() for name in (busy, quiet)]
    assert photo[0].st_ino == photo[1].st_ino and photo[0].st_nlink >= 2
    assert stat.S_IMODE((backups / quiet).stat().st_mode) == 0o700

    destroy_data(stack)
    out = stack.deploytool("restore", quiet).stdout
    assert "/health/ answers 200" in out and "next:" in out, out
    assert visits(stack) == rows and media_hashes(stack) == files  # every row, every byte
    assert stack.https_get("/")[0] == 200
    # The busy backup restores too: the rows committed by some moment, nothing else.
    stack.deploytool("restore", busy)
    restored = visits(stack)
    assert 0 < len(restored) <= len(rows) and {tuple(r) for r in restored} <= {tuple(r) for r in rows}
    stack.deploytool("restore", quiet)  # the later state again, for the tests that follow

    # A corrupted copy is refused by --verify and by restore, and nothing changes.
    before = visits(stack)
    dump = "database.dump" if stack.answers["database"] == "postgresql" else "database.sqlite3"
    damages = {
        "one byte flipped": lambda folder: flip_byte(folder / dump),
        "a truncated dump": lambda folder: os.truncate(folder / dump, (folder / dump).stat().st_size // 2),
        "a missing media file": lambda folder: (folder / "media/uploads/notes.txt").unlink(),
    }
    for number, (what, damage) in enumerate(damages.items()):
        copy = backups / quiet.replace("-quiet", f"-broken{number}")
        stack.as_user("cp", "-a", backups / quiet, copy)  # real copies: the original stays whole
        damage(copy)
        verified = stack.deploytool("backup", "--verify", copy.name, check=False)
        assert verified.returncode == 2 and "does not verify" in verified.stderr, (what, verified)
        count = len(list(backups.iterdir()))
        refused = stack.deploytool("restore", copy.name, check=False)
        assert refused.returncode == 2 and "nothing was changed" in refused.stderr, (what, refused)
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert len(list(backups.iterdir())) == count and visits(stack) == before, what
        shutil.rmtree(copy)


# A writer that inserts 10 rows per transaction, one transaction after another, until stopped.
WRITER = """
import sys, time
from django.db import transaction
from {slug}.models import Visit
print("writing", flush=True)
while True:
    with transaction.atomic():
        for _ in range(10):
            Visit.objects.create()
    time.sleep(0.005)
"""


def test_backup_holds_whole_transactions(stack: Stack) -> None:
    before = len(visits(stack))
    python = stack.project / stack.env["VENV"] / "bin/python"
    code = WRITER.format(slug=stack.answers["project_slug"])
    writer = subprocess.Popen(
        ["runuser", "-u", stack.user, "--", str(python), "manage.py", "shell", "--no-imports", "-c", code],
        cwd=stack.project,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and "writing" in writer.stdout.readline()
        time.sleep(1)
        name = backup_name(stack.deploytool("backup", "--label", "writer").stdout)
    finally:
        writer.terminate()
        writer.wait(10)
    after = visits(stack)
    stack.deploytool("restore", name)
    restored = visits(stack)
    written = len(restored) - before
    assert written > 0 and written % 10 == 0, f"{written} rows of the writer: half a transaction"
    assert restored == after[: len(restored)]  # one writer: the rows committed up to a moment
    stack.deploytool(
        "restore", [b for b in sorted(os.listdir(stack.project / "backups")) if b.endswith("-pre-restore")][-1]
    )
    assert visits(stack) == after


def test_a_backup_that_fills_the_disk_removes_nothing(stack: Stack) -> None:
    folder = (stack.project / "backups").resolve()
    user = pwd.getpwnam(stack.user)
    # A small disk of its own over the backup folder, for this test only.
    run(["mount", "-t", "tmpfs", "-o", f"size=4m,uid={user.pw_uid},gid={user.pw_gid},mode=750", "tmpfs", folder])
    big = stack.project / "media/uploads/big.bin"
    try:
        first = backup_name(stack.deploytool("backup").stdout)
        stack.as_user("mkdir", "-p", big.parent)
        stack.as_user("dd", "if=/dev/zero", f"of={big}", "bs=1M", "count=6", "status=none")
        full = stack.deploytool("backup", check=False)
        assert full.returncode == 2 and len(full.stderr.strip().splitlines()) == 1, full
        assert "backup failed, nothing was kept and nothing removed" in full.stderr, full.stderr
        assert sorted(os.listdir(folder)) == sorted([".lock", first])  # no partial left
        assert "verifies" in stack.deploytool("backup", "--verify", first).stdout
    finally:
        big.unlink(missing_ok=True)
        run(["umount", folder])


def test_a_backup_of_another_install_restores_only_when_asked(stack: Stack) -> None:
    """Real data into staging: a backup whose manifest names the pro install (the same data,
    as a pro install's backup holds it) is refused without --from-other-install, then
    restored with it."""
    backups = stack.project / "backups"
    name = backup_name(stack.deploytool("backup", "--label", "of-pro").stdout)
    other = name.replace("-of-pro", "-from-pro")
    stack.as_user("cp", "-a", backups / name, backups / other)
    manifest = json.loads((backups / other / "manifest.json").read_text())
    domain = stack.answers["domain"]
    theirs = (domain, "pro") if stack.env["INSTALL_TYPE"] != "pro" else (f"stage.{domain}", "stage")
    manifest.update(site=theirs[0], install_type=theirs[1])
    (backups / other / "manifest.json").write_text(json.dumps(manifest))
    before = visits(stack)
    stack.as_user(
        stack.project / stack.env["VENV"] / "bin/python",
        "manage.py",
        "shell",
        "--no-imports",
        "-c",
        f"from {stack.answers['project_slug']}.models import Visit; Visit.objects.create()",
    )
    refused = stack.deploytool("restore", other, check=False)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused
    assert f"is of {theirs[0]} ({theirs[1]} install)" in refused.stderr and "--from-other-install" in refused.stderr
    assert len(visits(stack)) == len(before) + 1  # nothing changed
    out = stack.deploytool("restore", other, "--from-other-install").stdout
    assert "/health/ answers 200" in out and visits(stack) == before, out


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# ---- e-mail ---------------------------------------------------------------------------------

SMTP_PORT = BLOCK + 40  # a spare port of the block: the mail server the test runs
ADMIN, USER = "ops@example.org", "someone@example.org"
# Routes the project adds in its own custom_urls.py: a view that fails, one that mails a user.
MAIL_URLS = f"""
from django.core.mail import send_mail
from django.http import HttpResponse
from django.urls import path


def boom(request):
    return 1 // 0


def mail_user(request):
    send_mail("Hello", "A mail to a user.", None, [{USER!r}, {ADMIN!r}])
    return HttpResponse("sent")


urlpatterns = [path("boom/", boom), path("mail-user/", mail_user)]
"""


class Inbox:
    """What a real SMTP server (aiosmtpd) on loopback received."""

    def __init__(self) -> None:
        self.mails: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.mails.append(envelope)
        return "250 OK"


@pytest.fixture
def mail_server() -> Iterator[Inbox]:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


def test_errors_mail_the_admins_and_stage_never_mails_users(stack: Stack, mail_server: Inbox) -> None:
    """A failing view: the client gets a plain 500, ADMINS the traceback (stage, pro); a mail
    to a user reaches the user from pro only; dev sends nothing, it writes files."""
    slug, kind = stack.answers["project_slug"], stack.env["INSTALL_TYPE"]
    urls, settings = stack.project / slug / "custom_urls.py", stack.project / "etc/settings_local.py"
    before = urls.read_text(), settings.read_text()
    local = f'\nEMAIL_HOST = "127.0.0.1"\nEMAIL_PORT = {SMTP_PORT}\nADMINS = [("ops", {ADMIN!r})]\n'
    try:
        stack.write(urls, MAIL_URLS)
        stack.write(settings, local, append=True)
        stack.as_user(stack.project / "bin/appctl.sh", "reload")
        wait_until(lambda: stack.https_get("/mail-user/")[0] == 200, "the app with the new routes")
        status, _, body = stack.https_get("/boom/")
        assert status == 500
        if kind == "dev":  # DEBUG: the traceback is the developer's page, and nothing is sent
            assert b"ZeroDivisionError" in body
            time.sleep(1)
            assert mail_server.mails == []
            written = list((stack.project / "data/mail").iterdir())
            assert written and any(USER in path.read_text() for path in written)
            return
        assert b"ZeroDivisionError" not in body and b"Traceback" not in body  # never to the client
        wait_until(lambda: len(mail_server.mails) >= 2, "the user's mail and the error report", timeout=15)
        report = [m for m in mail_server.mails if b"Internal Server Error: /boom/" in m.original_content]
        assert len(report) == 1 and report[0].rcpt_tos == [ADMIN], mail_server.mails
        assert b"ZeroDivisionError" in report[0].original_content
        domain = json.loads((stack.project / "etc/project.json").read_text())["domain"]
        assert report[0].mail_from == f"errors@{domain}"  # SERVER_EMAIL
        (hello,) = [m for m in mail_server.mails if b"Subject: Hello" in m.original_content]
        expected = [ADMIN] if kind == "stage" else [USER, ADMIN]
        assert sorted(hello.rcpt_tos) == sorted(expected), (kind, hello.rcpt_tos)
    finally:
        stack.write(urls, before[0])
        stack.write(settings, before[1])
        stack.as_user(stack.project / "bin/appctl.sh", "reload")
        wait_until(lambda: stack.https_get("/mail-user/")[0] == 404, "the app as it was")


# ---- watch: alerts mailed once per problem ----------------------------------------------------


def served_der(stack: Stack) -> bytes:
    context = ssl.create_default_context(cafile=str(stack.ca))
    with socket.create_connection(("127.0.0.1", stack.https), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=stack.site) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der
    return der


def serve_certificate(stack: Stack, fullchain: str, key: str) -> None:
    """Put a certificate where the sandbox's nginx reads it, reload nginx (HUP), and wait
    until it is served."""
    folder = stack.sandbox / f"etc/ssl/sandbox/{stack.site}"
    stack.write(folder / "privkey.pem", key)
    stack.write(folder / "fullchain.pem", fullchain)
    os.kill(int((stack.sandbox / "run/nginx.pid").read_text().split()[0]), signal.SIGHUP)
    wanted = ssl.PEM_cert_to_DER_cert(fullchain)
    wait_until(lambda: served_der(stack) == wanted, "nginx serving the new certificate")


def short_lived_certificate(stack: Stack, folder: Path, days: int) -> tuple[str, str]:
    """A certificate of the sandbox CA for the site that ends in ``days`` days."""
    ca = stack.ca
    key, csr, cert = folder / "key.pem", folder / "site.csr", folder / "cert.pem"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run(["openssl", "req", "-new", *ec, "-subj", f"/CN={stack.site}", "-keyout", key, "-out", csr])
    extensions = folder / "san.cnf"
    extensions.write_text(f"subjectAltName=DNS:{stack.site}\n")
    run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca.with_suffix(".key"),
            "-CAcreateserial",
            "-CAserial",
            folder / "serial",
            "-days",
            str(days),
            "-extfile",
            extensions,
            "-out",
            cert,
        ]
    )
    return cert.read_text(), key.read_text()


def watch_mails(stack: Stack, inbox: Inbox) -> list[tuple[str, str]]:
    """(Subject, To) of each mail watch sent, oldest first: what the SMTP server received
    (stage, pro), or the files dev's backend wrote in data/mail/ (nothing is sent there). A
    full disk on this machine is a real problem, not the test's: its mails are left out."""
    if stack.env["INSTALL_TYPE"] == "dev":
        files = sorted((stack.project / "data/mail").glob("*"))
        texts = [part.strip() for path in files for part in path.read_text().split("-" * 79)]
        messages = [email.message_from_string(text) for text in texts if text]
    else:
        messages = [email.message_from_bytes(mail.original_content) for mail in inbox.mails]
    found = [(str(m["Subject"]), str(m["To"])) for m in messages if m["Subject"]]
    mine = f"[Django] {stack.site}:"
    return [(subject, to) for subject, to in found if subject.startswith(mine) and " disk:" not in subject]


def test_watch_mails_each_problem_once_and_when_it_is_fixed(stack: Stack, mail_server: Inbox) -> None:
    """`deploytool watch` as its job runs it: a certificate 5 days from its end and a stale
    backup are mailed to ADMINS once each, not again on the next run, and once more when fixed
    (through the install's backend: SMTP on stage and pro, files on dev)."""
    settings = stack.project / "etc/settings_local.py"
    folder = stack.sandbox / f"etc/ssl/sandbox/{stack.site}"
    before = settings.read_text(), (folder / "fullchain.pem").read_text(), (folder / "privkey.pem").read_text()
    backups = stack.project / "backups"
    held = Path(tempfile.mkdtemp(prefix="held-", dir=backups.resolve().parent))
    shutil.chown(held, stack.user)
    local = f'\nEMAIL_HOST = "127.0.0.1"\nEMAIL_PORT = {SMTP_PORT}\nADMINS = [("ops", {ADMIN!r})]\n'
    try:
        stack.write(settings, local, append=True)
        for old in backups.iterdir():  # earlier tests' backups, out of the way
            old.rename(held / old.name)
        made = backup_name(stack.deploytool("backup").stdout)
        stale = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)).strftime("%Y%m%dT%H%M%SZ")
        (backups / made).rename(backups / (stale + made[16:]))
        with tempfile.TemporaryDirectory() as tmp:
            serve_certificate(stack, *short_lived_certificate(stack, Path(tmp), days=5))

        first = stack.deploytool("watch", check=False)
        assert first.returncode == 1, first.stdout + first.stderr
        expiring = r"critical: the certificate served for \S+ expires in [45]\.\d days"
        assert re.search(expiring, first.stdout), first.stdout
        told = watch_mails(stack, mail_server)
        critical = [(f"[Django] {stack.site}: CRITICAL {what}", ADMIN) for what in ("backup", "certificate")]
        assert sorted(told) == critical, told
        state = stack.project / "data/watch.json"
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        assert sorted(json.loads(state.read_text())["problems"])[:2] == ["backup", "certificate"]

        again = stack.deploytool("watch", check=False)
        assert again.returncode == 1 and "told at" in again.stdout, again.stdout
        time.sleep(0.5)  # a mail of this run would have arrived: the server is on loopback
        assert watch_mails(stack, mail_server) == told

        serve_certificate(stack, before[1], before[2])
        stack.deploytool("backup")
        fixed = stack.deploytool("watch", check=False)
        assert "recovered: certificate" in fixed.stdout and "recovered: backup" in fixed.stdout, fixed.stdout
        recovered = watch_mails(stack, mail_server)[len(told) :]
        assert sorted(recovered) == [
            (f"[Django] {stack.site}: RECOVERED {what}", ADMIN) for what in ("backup", "certificate")
        ]
        assert "certificate" not in json.loads(state.read_text())["problems"]
    finally:
        stack.write(settings, before[0])
        if served_der(stack) != ssl.PEM_cert_to_DER_cert(before[1]):
            serve_certificate(stack, before[1], before[2])
        for old in held.iterdir():
            old.rename(backups / old.name)
        held.rmdir()


# ---- the background worker (the stage stack: worker=celery) -----------------------------------


def worker_pid(stack: Stack) -> int | None:
    out = stack.as_user(stack.project / "bin/workerctl.sh", "status", check=False)
    match = re.search(r"running \(pid (\d+)\)", out.stdout)
    return int(match.group(1)) if out.returncode == 0 and match else None


def queued_by_the_view(stack: Stack) -> str:
    status, _, body = stack.https_request("POST", "/visits/later/")
    assert status == 202, body[:500]
    return body.decode().strip()


def worker_lines(stack: Stack, task: str, what: str) -> int:
    """How many lines of the worker's logs (the current one and the rotated one) say ``what``
    of ``task`` (received, succeeded)."""
    logs = [stack.project / "logs/celery.log", stack.project / "logs/celery.log.1"]
    return sum(path.read_text().count(f"[{task}] {what}") for path in logs if path.exists())


def test_the_worker_runs_tasks_comes_back_after_kill_and_rotates(stack: Stack) -> None:
    """A task queued by a view runs on the worker; kill -9 of the worker: its manager starts
    a new one; logrotate: no line lost, and no restart for it. A stack that chose no worker
    has none of it: no worker, no script, no Celery, no route that would queue a task."""
    if stack.answers.get("worker", "none") == "none":
        assert "WORKER_SERVICE" not in stack.env and not (stack.project / "bin/workerctl.sh").exists()
        assert "celery" not in (stack.project / "requirements.txt").read_text().lower()
        assert stack.https_request("POST", "/visits/later/")[0] == 404
        assert "worker" not in stack.deploytool("status", check=False).stdout
        return
    first = queued_by_the_view(stack)
    wait_until(lambda: worker_lines(stack, first, "succeeded") == 1, "the worker running the view's task")
    slug = stack.answers["project_slug"]
    read = f"from {slug}.tasks import record_visit; print(record_visit.AsyncResult({first!r}).get(timeout=10))"
    # the visit's id, as the app reads it (after the shell's own line about its imports)
    assert int(stack.deploytool("manage", "shell", "-c", read).stdout.split()[-1]) > 0

    killed = worker_pid(stack)
    assert killed
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: worker_pid(stack) not in (None, killed), "supervisord starting a new worker", timeout=60)
    second = queued_by_the_view(stack)
    wait_until(lambda: worker_lines(stack, second, "succeeded") == 1, "the new worker running a task", timeout=60)
    # nothing of the killed worker is left: every process naming the pid file is the new one's
    main = worker_pid(stack)
    pidfile = stack.env["WORKER_PIDFILE"]
    found = subprocess.run(["pgrep", "-f", "--", f"--pidfile {pidfile} "], capture_output=True, text=True)
    parents = {
        int(p): int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]) for p in found.stdout.split()
    }
    assert parents and all(pid == main or parent == main for pid, parent in parents.items()), (main, parents)

    pid = worker_pid(stack)
    conf = next((stack.sandbox / "etc/logrotate.d").iterdir())
    stack.as_user(tool("logrotate"), "-s", stack.sandbox / "logrotate.state", "-f", conf)
    assert (stack.project / "logs/celery.log.1").is_file()
    third = queued_by_the_view(stack)
    wait_until(
        lambda: f"[{third}] succeeded" in (stack.project / "logs/celery.log").read_text(),
        "the worker writing to the new log",
    )
    assert worker_pid(stack) == pid  # Celery reopened its log by itself
    for task in (first, second, third):
        assert (worker_lines(stack, task, "received"), worker_lines(stack, task, "succeeded")) == (1, 1), task
    assert re.search(r"^worker +running$", stack.deploytool("status", check=False).stdout, re.M)
    # this host runs the jobs (JOBS=on): the worker runs the install's one Celery beat too
    rotated = (stack.project / "logs/celery.log.1").read_text()
    assert "beat: Starting..." in rotated, rotated[-2000:]
    assert list((stack.project / "data").glob("celerybeat-schedule*")), "no beat schedule in data/"  # a dbm file


# ---- the maintenance page ----------------------------------------------------------------------

VISITOR = "127.0.0.2"  # a client address of loopback's that is never let through


def test_maintenance_page_for_everyone_but_the_allowed_address(stack: Stack) -> None:
    """`maintenance on --allow` as the team does it: visitors get the page (static files
    still served), the team's address (wrk's, 127.0.0.1) keeps the site, and nginx is
    neither reloaded nor failing."""
    master = (stack.sandbox / "run/nginx.pid").read_text().split()[0]
    workers = subprocess.run(["pgrep", "-P", master], capture_output=True, text=True).stdout.split()
    host = f"{stack.site}:{stack.https}"
    argv = wrk_argv(tool("wrk"), f"https://127.0.0.1:{stack.https}/", host, stack.project.parent / "count.lua", 60)
    with under_load(argv) as seen:
        on = stack.deploytool("maintenance", "on", "--allow", "127.0.0.1", "::1").stdout
        assert "let through: 127.0.0.1, ::1" in on and "next: `bin/deploytool maintenance off`" in on, on
        status, headers, body = stack.https_get("/", source=VISITOR)
        assert (status, headers.get("retry-after")) == (503, "120") and b'id="maintenance"' in body, status
        assert "cache-control" not in headers and headers["x-frame-options"] == "DENY"
        assert stack.https_get("/admin/login/", source=VISITOR)[0] == 503
        assert stack.https_get("/health/", source=VISITOR)[0] == 200  # the app's real state, for checks
        assert stack.https_get(hashed_css(stack), source=VISITOR)[0] == 200  # files the page may use
        assert stack.https_get("/")[0] == 200  # the team
        assert "let through: 127.0.0.1, ::1" in stack.deploytool("maintenance").stdout
        assert "serves everyone" in stack.deploytool("maintenance", "off").stdout
        assert stack.https_get("/", source=VISITOR)[0] == 200
    seen.assert_nothing_failed(least=50)
    assert subprocess.run(["pgrep", "-P", master], capture_output=True, text=True).stdout.split() == workers
    assert sorted(os.listdir(stack.project / "maintenance")) == []  # off leaves no flag behind

    # A network is not an address: one line naming it, and nothing switched on.
    refused = stack.deploytool("maintenance", "on", "--allow", "10.0.0.0/8", check=False)
    assert refused.returncode == 2 and "--allow '10.0.0.0/8' is not an IP address" in refused.stderr, refused
    assert len(refused.stderr.splitlines()) == 1 and os.listdir(stack.project / "maintenance") == []
    # Another local account cannot take the site down.
    assert probe([("write", stack.project / "maintenance/on", "x")]) == ["EACCES"]
    assert stack.https_get("/", source=VISITOR)[0] == 200


# ---- logs ------------------------------------------------------------------------------------


def test_logs_follow_a_request_and_manage_runs_as_the_user(stack: Stack) -> None:
    """`logs nginx -f` prints a request's access line as nginx writes it; `manage` runs
    manage.py commands in the install's venv as the project user, never as root."""
    # Lines of earlier requests may still sit in another nginx worker's buffer (flush=1s):
    # written after the probe's, they would push it out of the last lines read below.
    time.sleep(1.5)
    follow = subprocess.Popen(
        ["runuser", "-u", stack.user, "--", stack.project / "bin/deploytool", "logs", "nginx", "-f", "-n", "1"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=stack.project,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in follow.stdout or []], daemon=True).start()
    try:
        assert lines.get(timeout=30).startswith("nginx.")  # the last line of each file: it follows now
        marker = f"/logs-probe-{os.getpid()}/"
        asked = time.monotonic()
        assert stack.https_get(marker)[0] == 404
        seen = ""
        while marker not in seen:
            seen = lines.get(timeout=10)
        # As it is written, not when the follower ends: nginx batches its access log
        # (flush=1s) and the follower polls every 0.2 s, so about a second after the request.
        assert time.monotonic() - asked < 5, time.monotonic() - asked
        assert seen.startswith("nginx.access.log: ") and " 404 " in seen, seen
    finally:
        follow.terminate()
        follow.wait(timeout=10)
    # Each nginx worker flushes its own buffer: the file's last lines need not be the newest.
    recent = stack.deploytool("logs", "all", "-n", "50").stdout
    assert re.search(r"^nginx\.access\.log: .*logs-probe", recent, re.M), recent

    slug = stack.answers["project_slug"]
    shown = stack.deploytool("manage", "showmigrations", slug).stdout
    assert "[X] 0001_initial" in shown, shown
    assert "System check identified no issues" in stack.deploytool("manage", "check").stdout
    as_root = subprocess.run(
        [stack.project / "bin/deploytool", "manage", "check"], capture_output=True, text=True, cwd=stack.project
    )
    assert as_root.returncode == 2 and "not as root" in as_root.stderr, as_root
    assert len(as_root.stderr.splitlines()) == 1


def live_nginx(pid: int | str) -> bool:
    """Whether pid is a live nginx process (a zombie nobody reaped has an empty cmdline)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx")
    except OSError:
        return False


def test_a_killed_nginx_master_is_told_and_recovered(stack: Stack) -> None:
    """kill -9 of nginx's master leaves its workers serving the old config on the ports:
    `status` says so, `up` replaces them with a new master, nothing of the old one is left."""
    master = int((stack.sandbox / "run/nginx.pid").read_text().split()[0])
    workers = set(subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split())
    assert workers, "nginx runs no workers"
    os.kill(master, signal.SIGKILL)
    wait_until(lambda: not live_nginx(master), "the master gone")
    assert stack.https_get("/health/")[0] == 200  # the orphans still answer
    said = stack.deploytool("status", check=False)
    assert said.returncode == 1 and re.search(r"^nginx +stopped$", said.stdout, re.M), said.stdout
    assert "still hold its ports (their master was killed)" in said.stdout, said.stdout
    up = stack.deploytool("up")
    assert "stopped nginx worker" in up.stdout, up.stdout
    assert stack.deploytool("status").returncode == 0
    new_master = int((stack.sandbox / "run/nginx.pid").read_text().split()[0])
    assert new_master != master
    alive = [pid for pid in workers if live_nginx(pid)]
    assert alive == [], f"old workers still run: {alive}"
    assert stack.https_get("/health/")[0] == 200


def test_logs_land_under_logs_and_rotate_without_a_restart(stack: Stack) -> None:
    logs = stack.project / "logs"
    assert logs.is_symlink()
    stack.https_get("/")
    # nginx buffers its access log (flushed within a second): rotate once the line is there.
    wait_until(lambda: (logs / "nginx.access.log").stat().st_size > 0, "nginx flushing its access log")
    names = {p.name for p in logs.iterdir()}
    app_log = "uwsgi.log" if stack.answers["app_server"] == "uwsgi" else "gunicorn.error.log"
    assert {"nginx.access.log", app_log} <= names
    pid = app_pid(stack)
    conf = next((stack.sandbox / "etc/logrotate.d").iterdir())
    # The sandbox's logrotate runs as its owner (a server's runs as root, on a root-owned copy).
    stack.as_user(tool("logrotate"), "-s", stack.sandbox / "logrotate.state", "-f", conf)
    assert (logs / "nginx.access.log.1").exists()
    assert (logs / f"{app_log}.1").exists()
    # A 404 is logged by nginx and by the app server (both log their 4xx and 5xx answers).
    marker = f"/rotated-{time.time_ns()}/"
    assert stack.https_get(marker)[0] == 404
    wait_until(lambda: marker.encode() in (logs / "nginx.access.log").read_bytes(), "nginx writing to the new log")
    writer_log = logs / ("uwsgi.log" if stack.answers["app_server"] == "uwsgi" else "gunicorn.access.log")
    wait_until(
        lambda: marker.encode() in writer_log.read_bytes(), f"the app server writing to the new {writer_log.name}"
    )
    assert app_pid(stack) == pid  # no restart
    # From then on nothing lands in the rotated files (a writer may finish a line there while
    # it reopens, as supervisord does): every writer, nginx, the app server and its workers,
    # supervisord, writes to the new ones.
    rotated = {path.name: path.stat().st_size for path in logs.glob("*.log.1")}
    again = f"/rotated-again-{time.time_ns()}/"
    assert stack.https_get(again)[0] == 404
    wait_until(lambda: again.encode() in (logs / "nginx.access.log").read_bytes(), "nginx writing to the new log")
    wait_until(
        lambda: again.encode() in writer_log.read_bytes(), f"the app server writing to the new {writer_log.name}"
    )
    grown = {name for name, size in rotated.items() if (logs / name).stat().st_size != size}
    assert not grown, f"still written to after the rotation: {grown}"


# ---- bin/appctl.sh on the running stack ---------------------------------------------------


def test_appctl_drives_the_running_stack(stack: Stack) -> None:
    ctl = stack.project / "bin/appctl.sh"
    refused = subprocess.run([ctl, "status"], capture_output=True, text=True)  # as root
    assert refused.returncode != 0 and "root" in refused.stderr
    pid = app_pid(stack)
    assert "already running" in stack.as_user(ctl, "start").stdout  # a no-op that succeeds
    assert app_pid(stack) == pid  # no second instance
    stack.as_user(ctl, "reload")
    assert app_pid(stack) == pid  # graceful: the master stays
    assert stack.https_get("/")[0] == 200
    stack.as_user(ctl, "stop")
    assert stack.as_user(ctl, "status", check=False).returncode == 3
    # The app server is down: nginx answers with the project's page, 503, come back later.
    status, headers, body = stack.https_get("/")
    assert (status, headers.get("retry-after")) == (503, "120") and b'id="maintenance"' in body, (status, headers)
    assert headers["x-content-type-options"] == "nosniff"  # the site's headers on it too
    stack.as_user(ctl, "stop")  # already stopped: a no-op that succeeds
    stack.as_user(ctl, "start")
    assert stack.https_get("/")[0] == 200
    stack.as_user(ctl, "restart")
    assert app_pid(stack) != pid and stack.https_get("/")[0] == 200
    app(stack, "start")  # back under the process manager (it takes over a hand-started server)
    wait_until(lambda: stack.https_get("/")[0] == 200, "the site under its process manager again")


# ---- other local accounts: the attacker on a shared server -------------------------------------


@pytest.fixture
def drop_box() -> Iterator[Path]:
    """A folder every account may write to (as /tmp is), for markers an attack would create."""
    folder = Path(tempfile.mkdtemp(prefix="dj-layout-probe-"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_outsider_cannot_reach_the_app_server(stack: Stack, drop_box: Path) -> None:
    """As nobody: the uwsgi exec packet and a direct /admin/ request, on the app's unix socket
    and on its (reserved, unused) port: refused before a byte reaches the app server."""
    socket_path, port, site = stack.env["APP_SOCKET"], stack.env["PORT_APP"], stack.site
    marker = drop_box / "outsider-ran-a-command"
    packet = exec_packet(marker) if stack.answers["app_server"] == "uwsgi" else http_get("/admin/", site)
    seen = probe([("unix", socket_path, packet), ("tcp", port, packet), ("list", stack.env["SOCKET_DIR"], "")])
    assert seen == ["EACCES", "ECONNREFUSED", "EACCES"]
    time.sleep(0.5)  # a command uWSGI had been made to run would have touched it by now
    assert not marker.exists()
    if stack.answers["app_server"] == "uwsgi":
        stats = probe([("unix", stack.env["STATS_SOCKET"], ""), ("tcp", stack.env["PORT_STATS"], "")])
        assert stats == ["EACCES", "ECONNREFUSED"]
        # The same packet from an account let in (the project user) does run the command:
        # the socket's permissions are all that stops nobody.
        assert probe([("unix", socket_path, packet)], account=stack.user)[0].startswith("ok:")
        wait_until(marker.exists, "the project user's exec packet running its command", 10)
    # Through nginx, /admin/ still wants the basic-auth password.
    assert stack.https_get("/admin/")[0] == 401


def test_outsider_cannot_read_the_installs_files(stack: Stack) -> None:
    """As nobody: the database, the secrets, the TLS key, uploads and logs cannot be read; and
    each file is closed by its own mode too, not only by the folders around it."""
    upload = stack.project / "media/probe-upload.txt"
    stack.as_user("sh", "-c", f"umask 0027; echo private > {upload}")
    log_dir = Path(stack.env["LOG_DIR"])
    secrets = {
        "settings_local": stack.project / "etc/settings_local.py",
        "htpasswd": stack.project / "etc/htpasswd",
        "admin password": stack.project / "etc/admin_password",
        "nginx's htpasswd copy": stack.sandbox / f"etc/nginx/htpasswd/{stack.site}",
        "TLS key": stack.sandbox / f"etc/ssl/sandbox/{stack.site}/privkey.pem",
        "upload": upload,
        "nginx log": log_dir / "nginx.access.log",
        "app log": Path(stack.env["APP_LOG"]),
    }
    if stack.answers["database"] == "sqlite":
        secrets["database"] = stack.project / "data/db.sqlite3"
    for name, path in secrets.items():
        assert path.is_file(), name
    seen = probe([("read", path, "") for path in secrets.values()] + [("list", stack.project, "")])
    assert seen == ["EACCES"] * (len(secrets) + 1), dict(zip([*secrets, "install root"], seen, strict=True))
    for name, path in secrets.items():
        assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0, f"{name} {path} is open to other accounts"
    if "database" in secrets:
        assert stat.S_IMODE(secrets["database"].stat().st_mode) == 0o600
    for folder in (stack.project, stack.project / "data", stack.project / "etc", log_dir, Path(stack.env["RUN_DIR"])):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o007 == 0, folder
    # Every file the running stack wrote (logs, run files, data) was made with umask 0027;
    # pid files aside: gunicorn chmods its own to 644 (a pid is no secret, the folder is 0750).
    for folder in (log_dir, Path(stack.env["RUN_DIR"]), stack.project / "data"):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.suffix != ".pid":
                assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0, path


def test_outsider_cannot_use_the_cache_or_the_database(stack: Stack) -> None:
    run_dir = Path(stack.env["RUN_DIR"])
    cache = stack.answers["cache"]
    if cache != "none":
        ask = {"redis": "PING\r\n", "memcached": "version\r\n"}[cache].encode().hex()
        sock = run_dir / f"{cache}.sock"
        seen = probe([("unix", sock, ask), ("tcp", stack.env[f"PORT_{cache.upper()}"], ask)])
        assert seen == ["EACCES", "ECONNREFUSED"]
        assert probe([("unix", sock, ask)], account=stack.user)[0].startswith("ok:")  # the owner gets in
    if stack.answers["database"] == "postgresql":
        port = stack.env["PORT_POSTGRESQL"]
        seen = probe([("unix", run_dir / f".s.PGSQL.{port}", "")])
        assert seen == ["EACCES"]
        psql = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1]
        db = local_settings(stack.project)["DATABASES"]["default"]
        command = ["runuser", "-u", ATTACKER, "--", psql, "-h", "127.0.0.1", "-p", port, "-U", db["USER"], "-w"]
        command += ["-d", db["NAME"], "-c", "SELECT 1"]
        refused = subprocess.run([*map(str, command)], capture_output=True, text=True)
        assert refused.returncode == 2 and "no password supplied" in refused.stderr, refused.stderr
