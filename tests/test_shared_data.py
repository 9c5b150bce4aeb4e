"""One site on several servers that share its data: a data host's PostgreSQL and Redis on
its private address, two app hosts that use them, a front that balances over them, each host
with the roles of etc/fleet.ini and the nftables rules rendered from them, loaded.

The hosts are network namespaces this module makes on a private bridge (10.214.0.0/24, which
exists only inside them): lb 10.214.0.10 (the front), web1 .11 and web2 .12 (gunicorn on their
private address), data .13 (the install's PostgreSQL, Redis and media store). Each host has its own clone of
one baked repo, a stage install (DEBUG off: the site's own error page); the data host's
settings_local.py is copied to the others, as the README says (one database, one cache, one
SECRET_KEY). Ports: block 64900's stage install (64910-64919), the same numbers on every host.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import BLOCKS, GIT, bake_for_user, program, run, wait_until
from support.netns import Network, Node, make_ssh, sshd
from support.wrkload import under_load, wrk_argv

BLOCK = BLOCKS["shared"]
STAGE = BLOCK + 10  # the stage install's ten ports
APP_PORT, HTTPS_PORT, POSTGRESQL_PORT, REDIS_PORT, MEDIA_PORT = STAGE + 1, STAGE + 3, STAGE + 5, STAGE + 6, STAGE + 9
LB, DATA = "10.214.0.10", "10.214.0.13"
APPS = {"web1": "10.214.0.11", "web2": "10.214.0.12"}
STRANGER = "10.214.0.99"  # an address on the bridge that fleet.ini does not name
WEB3 = "10.214.0.14"  # a bare host (the user and sshd): release two adds it to fleet.ini
PASSWORD = "a password for alice"

# Through the front as a browser would: the admin's login form, then its index page N times.
LOGIN = r"""
import http.client, json, re, socket, ssl, sys, urllib.parse
site, port, ca, user, password, count = sys.argv[1:7]
context = ssl.create_default_context(cafile=ca)
cookies = {}

def ask(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(site, int(port), timeout=30)
    conn.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", int(port))), server_hostname=site)
    sent = {"Host": f"{site}:{port}", "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), **(headers or {})}
    conn.request(method, path, body=body, headers=sent)
    answer = conn.getresponse()
    for header, value in answer.getheaders():
        if header.lower() == "set-cookie":
            name, _, rest = value.partition("=")
            cookies[name] = rest.split(";", 1)[0]
    return answer.status, answer.read().decode()

status, page = ask("GET", "/admin/login/?next=/admin/")
token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": user, "password": password, "next": "/admin/"})
login, _ = ask("POST", "/admin/login/?next=/admin/", form, {
    "Content-Type": "application/x-www-form-urlencoded", "Referer": f"https://{site}:{port}/admin/login/"})
answers = []
for _ in range(int(count)):
    status, page = ask("GET", "/admin/")
    answers.append([status, f"<strong>{user}</strong>" in page])
print(json.dumps({"login": login, "session": cookies.get("sessionid", ""), "answers": answers}))
"""


def fleet_section(base: Path, name: str, address: str, role: str) -> str:
    return f"[{name}]\naddress = {address}\nroot = {base / name / 'shared'}\nroles = {role}\n"


@dataclass
class Site:
    network: Network
    nodes: dict[str, Node]  # lb, web1, web2, data
    site: str
    slug: str
    repo: Path  # the repo every host cloned: a developer's commits land here
    ssh_config: Path  # the operator's (the project user's on lb): keys and known_hosts made here
    web3: Node  # no install yet: `deploy --hosts web3` prepares it

    def manage(self, host: str, code: str) -> str:
        """`manage.py shell -c CODE` on ``host``, as the project user: its last line."""
        node = self.nodes[host]
        out = node.run(node.root / "env3.11/bin/python", "manage.py", "shell", "--no-imports", "-c", code).stdout
        return out.strip().splitlines()[-1] if out.strip() else ""

    def psql(self, where: str) -> subprocess.CompletedProcess[str]:
        """`select 1` in the site's database on the data host, from the namespace ``where``,
        with the password of settings_local.py."""
        settings = (self.nodes["data"].root / "etc/settings_local.py").read_text()
        password = settings.split('"PASSWORD": "', 1)[1].split('"', 1)[0]
        psql = [program("psql", "postgresql"), "-h", DATA, "-p", str(POSTGRESQL_PORT), "-U", self.nodes["data"].user]
        argv = ["env", f"PGPASSWORD={password}", *psql, "-d", self.slug, "-tAc", "select 1"]
        return subprocess.run(self.network.exec(where, *argv), capture_output=True, text=True, timeout=30)

    def front_get(self, path: str, *curl: str) -> tuple[int, str]:
        """Status and body of ``path`` through the front's nginx over HTTPS, from lb itself
        (GET, or what the curl options given ask)."""
        lb = self.nodes["lb"]
        argv = self.network.exec(
            "lb",
            program("curl", "curl"),
            "-s",
            *curl,
            "--cacert",
            lb.root / ".sandbox/etc/ssl/sandbox-ca.pem",
            "-w",
            "\n%{http_code}",
            "--resolve",
            f"{self.site}:{HTTPS_PORT}:127.0.0.1",
            f"https://{self.site}:{HTTPS_PORT}{path}",
        )
        body, _, status = run(argv).stdout.rpartition("\n")
        return int(status), body

    def front_status(self, path: str) -> int:
        return self.front_get(path)[0]

    def media_store(self, where: str, method: str, path: str, *curl: str, user: str = "") -> int:
        """The status the data host's media store answers ``method path``, from the namespace
        ``where`` (as ``user`` there, when given), with the curl options given."""
        argv = [program("curl", "curl"), "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, *curl]
        argv += ["--max-time", "10", f"http://{DATA}:{MEDIA_PORT}{path}"]
        return int(run(self.network.exec(where, *(["runuser", "-u", user, "--"] if user else []), *argv)).stdout)

    def direct(self, where: str, host: str, path: str, cookie: str = "") -> tuple[int, str]:
        """GET straight to ``host``'s app server (gunicorn's HTTP, past every nginx), from
        the namespace ``where``, with the headers nginx sends."""
        script = (
            "import http.client, sys; c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=30); "
            "c.request('GET', sys.argv[3], headers={'Host': sys.argv[4], 'X-Forwarded-Proto': 'https', "
            "'Cookie': sys.argv[5]}); r = c.getresponse(); print(r.status); print(r.read().decode())"
        )
        argv = self.network.exec(where, "python3", "-c", script, APPS[host], str(APP_PORT), path, self.site, cookie)
        status, _, body = run(argv).stdout.partition("\n")
        return int(status), body


@pytest.fixture(scope="module")
def shared(project_user: str, project_venv: Path) -> Iterator[Site]:
    for name, package in (("ip", "iproute2"), ("nft", "nftables"), ("psql", "postgresql"), ("sshd", "openssh-server")):
        program(name, package)
    privsep = Path("/run/sshd")  # sshd's privilege separation folder (the package makes it at boot)
    made_privsep = not privsep.exists()
    privsep.mkdir(mode=0o755, exist_ok=True)
    project = bake_for_user(
        project_user,
        project_venv,
        project_name="Shared",
        port_block_start=BLOCK,
        app_server="gunicorn",
        database="postgresql",
        cache="redis",
        admin_basic_auth="false",
        app_upstreams=", ".join(APPS.values()),
    )
    base = project.parent
    hosts = {**APPS, "data": DATA, "web3": WEB3}
    network = Network(hosts, lb=LB, tag="djld")
    roles = {"lb": "front", "web1": "app", "web2": "app", "data": "data"}
    addresses = {"lb": LB, **hosts}
    fleet = "".join(fleet_section(base, name, addresses[name], role) for name, role in roles.items())
    (project / "etc/fleet.ini").write_text(fleet)
    as_user = ["runuser", "-u", project_user, "--"]
    for step in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "Generated by dj-layout"]):
        run([*as_user, *GIT, *step], cwd=project)  # the repo every host clones: fleet.ini tracked
    nodes: dict[str, Node] = {}
    started: list[Node] = []
    try:
        network.create()
        for name in ("data", "web1", "web2", "lb"):  # the data host first: its settings are the site's
            root = base / name / "shared"
            root.parent.mkdir()
            shutil.chown(root.parent, project_user, project_user)
            run([*as_user, *GIT, "clone", "-q", project, root])  # no local file: a fresh clone
            (root / "env3.11").symlink_to(project_venv)
            run(["chown", "-h", f"{project_user}:{project_user}", root / "env3.11"])
            node = nodes[name] = Node(name, network, root, project_user)
            if name != "data":
                local = root / "etc/settings_local.py"
                shutil.copy2(nodes["data"].root / "etc/settings_local.py", local)
                shutil.chown(local, project_user, project_user)
            bind = ["--app-bind", APPS[name]] if name in APPS else []
            jobs = "on" if name == "web1" else "off"
            node.deploytool("init", "--install-type", "stage", "--fleet-host", name, "--jobs", jobs, *bind)
        for name in ("data", "web1", "web2", "lb"):  # data first (its PostgreSQL, the migrations), lb last
            out = nodes[name].deploytool("up").stdout
            started.append(nodes[name])
            for server in ("postgresql", "redis", "media"):
                assert (f"starting {server}" in out) == (name == "data"), f"{name}:\n{out}"
        for node in nodes.values():
            node.nft("-f", node.rules)
        # web3: the project user and sshd, no checkout. Its venv is there already (the namespace
        # has no way to PyPI), as the folder the user part would make from requirements.txt.
        web3_root = base / "web3" / "shared"
        web3_root.mkdir(parents=True)
        (web3_root / "env3.11").symlink_to(project_venv)
        run(["chown", "-R", "-h", f"{project_user}:{project_user}", base / "web3"])
        web3 = Node("web3", network, web3_root, project_user)
        slug = json.loads((project / "etc/project.json").read_text())["project_slug"]
        ssh, host_keys, authorized = make_ssh(base, project_user, addresses)
        with ExitStack() as servers:  # an sshd on every host: lb deploys to them all
            for name in addresses:
                servers.enter_context(sshd(network, name, host_keys[name], authorized, project_user))
            yield Site(network, nodes, nodes["lb"].env["SITE"], slug, project, ssh / "config", web3)
    finally:
        if (base / "web3/shared/etc/env.conf").exists():
            web3.deploytool("down", check=False)
        for node in reversed(started):
            node.deploytool("down", check=False)
        network.remove()
        shutil.rmtree(base, ignore_errors=True)
        if made_privsep:
            privsep.rmdir()


def test_every_host_uses_the_data_hosts_database_and_cache(shared: Site) -> None:
    """One settings file for the site: every host's DATABASES and CACHES name the data host;
    only the data host runs PostgreSQL and Redis, on its private address, and its pg_hba.conf
    admits the app hosts."""
    for name, node in shared.nodes.items():
        settings = (node.root / "etc/settings_local.py").read_text()
        assert f'"HOST": "{DATA}"' in settings and f'"redis://{DATA}:{REDIS_PORT}/0"' in settings, name
        status = node.run(node.root / "bin/deploytool", "status", check=False).stdout
        assert ("postgresql" in status, "redis" in status) == (name == "data",) * 2, f"{name}:\n{status}"
    timers = {
        name: sorted(path.name.split("_")[-1] for path in (node.root / "etc/systemd/system").glob("*.timer"))
        for name, node in shared.nodes.items()
    }
    everywhere = ["watch.timer"]  # each host checks what it holds; the backup runs where the data is
    assert timers == {
        "lb": everywhere,
        "web1": ["clearsessions.timer", *everywhere],  # the host with JOBS=on
        "web2": everywhere,
        "data": ["backup.timer", *everywhere],
    }, timers
    hba = (shared.nodes["data"].root / "etc/postgresql/pg_hba.conf").read_text()
    for address in (*APPS.values(), DATA):
        assert f"{address}/32  scram-sha-256" in hba, hba
    assert LB not in hba


def test_a_login_through_the_front_is_valid_on_every_app_host(shared: Site) -> None:
    code = (
        "from django.contrib.auth import get_user_model; User = get_user_model(); "
        f"User.objects.filter(username='alice').exists() or User.objects.create_superuser('alice', '', {PASSWORD!r}); "
        "print(User.objects.filter(username='alice').count())"
    )
    assert shared.manage("web1", code) == "1"  # made through web1: the data host's database
    lb = shared.nodes["lb"]
    ca = lb.root / ".sandbox/etc/ssl/sandbox-ca.pem"
    argv = shared.network.exec("lb", "python3", "-c", LOGIN, shared.site, str(HTTPS_PORT), ca, "alice", PASSWORD, "8")
    result = json.loads(run(argv).stdout)
    assert result["login"] == 302 and result["session"], result  # logged in, on whichever host took the POST
    assert result["answers"] == [[200, True]] * 8, result  # round robin: both hosts, the same session
    session = result["session"]
    in_redis = (  # the login wrote the session to the shared Redis: web2 reads it there, not loading it
        "from django.contrib.sessions.backends.cached_db import SessionStore; "
        f"store = SessionStore(session_key={session!r}); print(store._cache.get(store.cache_key) is not None)"
    )
    assert shared.manage("web2", in_redis) == "True"
    for host in APPS:  # and on each host by itself, past the front
        status, page = shared.direct("lb", host, "/admin/", f"sessionid={result['session']}")
        assert status == 200 and "<strong>alice</strong>" in page, (host, status, page[:300])
        status, _ = shared.direct("lb", host, "/admin/")  # without the cookie: the login form
        assert status == 302, (host, status)


def test_a_row_written_through_one_app_host_is_read_through_the_other(shared: Site) -> None:
    count = f"from {shared.slug}.models import Visit; print(Visit.objects.count())"
    before = int(shared.manage("web2", count))
    for _ in range(5):  # the home page writes a row per visit: through web1
        assert shared.direct("lb", "web1", "/")[0] == 200
    assert int(shared.manage("web2", count)) == before + 5
    status, page = shared.direct("lb", "web2", "/visits/")
    assert status == 200 and page.count("<li") >= 5, page[:300]


def test_a_value_cached_through_one_app_host_is_read_through_the_other(shared: Site) -> None:
    token = f"made by web1 at {time.time()}"
    assert (
        shared.manage("web1", f"from django.core.cache import cache; cache.set('shared', {token!r}); print('set')")
        == "set"
    )
    assert shared.manage("web2", "from django.core.cache import cache; print(cache.get('shared'))") == token


def test_an_upload_through_one_app_host_is_served_by_the_front_and_read_by_the_other(shared: Site) -> None:
    """One media store: a file saved by web1's Django is at once on the data host's disk
    (mode 640, the project user's), served by the front at its URL, read by web2's Django;
    deleted through web2, the front no longer serves it."""
    data = shared.nodes["data"]
    body = f"an upload made through web1 at {time.time()}"
    save = (
        "from django.core.files.base import ContentFile; from django.core.files.storage import default_storage; "
        f"name = default_storage.save('notes/hello.txt', ContentFile({body!r}.encode())); "
        "print(name, default_storage.url(name))"
    )
    name, url = shared.manage("web1", save).split()
    assert url == f"/media/{name}" and name.startswith("notes/hello"), (name, url)
    stored = data.root / "media" / name
    assert stored.read_text() == body
    assert (oct(stored.stat().st_mode & 0o777), stored.owner()) == ("0o640", data.user)
    for _ in range(3):
        assert shared.front_get(url) == (200, body)
    read = (
        f"from django.core.files.storage import default_storage; print(default_storage.open({name!r}).read().decode())"
    )
    assert shared.manage("web2", read) == body
    # Backed up where the data is: the data host's backup holds the upload; an app host refuses.
    data.deploytool("backup")
    taken = sorted(path for path in (data.root / "backups").iterdir() if not path.name.startswith("."))[-1]
    assert (taken / "media" / name).read_text() == body
    refused = shared.nodes["web1"].deploytool("backup", check=False)
    assert refused.returncode != 0 and "the uploads are on the data host data" in refused.stderr, refused
    gone = f"from django.core.files.storage import default_storage; default_storage.delete({name!r}); print('deleted')"
    assert shared.manage("web2", gone) == "deleted"
    assert shared.front_status(url) == 404 and not stored.exists()


def test_only_the_app_hosts_write_to_the_media_store_and_only_with_the_password(shared: Site) -> None:
    """The media store's password is the app hosts' (settings_local.py, mode 600): another
    account on web1 has none and is refused; the front reads but may not write, password
    or not; through the front nobody writes; a stranger's address reaches nothing."""
    settings = (shared.nodes["web1"].root / "etc/settings_local.py").read_text()
    password = settings.split('MEDIA_PASSWORD = "', 1)[1].split('"', 1)[0]
    writer = ["--user", f"media:{password}", "--data-binary", "written"]
    assert shared.media_store("web1", "PUT", "/probe.txt", *writer) == 201
    assert shared.media_store("lb", "GET", "/probe.txt") == 200  # the front reads
    peek = shared.network.exec(
        "web1", "runuser", "-u", "nobody", "--", "cat", shared.nodes["web1"].root / "etc/settings_local.py"
    )
    assert subprocess.run(peek, capture_output=True, timeout=30).returncode != 0  # nobody has no password
    assert shared.media_store("web1", "PUT", "/probe.txt", "--data-binary", "x", user="nobody") == 401
    assert shared.media_store("web1", "DELETE", "/probe.txt", "--user", "media:guess", user="nobody") == 401
    assert shared.media_store("lb", "PUT", "/probe.txt", *writer) == 403  # the front holds the file too
    assert shared.front_get("/media/probe.txt", "-X", "PUT", "--data-binary", "x")[0] == 403
    assert shared.front_get("/media/probe.txt") == (200, "written")
    assert shared.media_store("web1", "DELETE", "/probe.txt", "--user", f"media:{password}") == 204
    shared.network.ip_in("lb", "addr", "add", f"{STRANGER}/24", "dev", "br0")
    try:
        assert shared.network.connect("lb", DATA, MEDIA_PORT, source=STRANGER) == "refused"
    finally:
        shared.network.ip_in("lb", "addr", "del", f"{STRANGER}/24", "dev", "br0")


# Redis's answers to the commands given (inline, one per argument), from the namespace given.
REDIS = r"""
import socket, sys
probe = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
for command in sys.argv[3:]:
    probe.sendall(command.encode() + b"\r\n")
    print(probe.recv(200).decode().strip())
"""


def test_the_data_hosts_postgresql_and_redis_admit_the_app_hosts_only(shared: Site) -> None:
    """With the rules loaded: the app hosts connect, the front and a stranger are refused,
    and the app port refuses the data host; an app host without the password gets nothing
    from Redis, and with it no admin command (CONFIG SET, SHUTDOWN). Without the data host's
    rules, pg_hba.conf still turns the front away: a second wall, not the only one."""
    network = shared.network
    for host in APPS:
        for port in (POSTGRESQL_PORT, REDIS_PORT):
            assert network.connect(host, DATA, port) == "connected", (host, port)
    network.ip_in("lb", "addr", "add", f"{STRANGER}/24", "dev", "br0")
    try:
        for port in (POSTGRESQL_PORT, REDIS_PORT):
            assert network.connect("lb", DATA, port) == "refused", port
            assert network.connect("lb", DATA, port, source=STRANGER) == "refused", port
    finally:
        network.ip_in("lb", "addr", "del", f"{STRANGER}/24", "dev", "br0")

    def redis(*commands: str) -> list[str]:
        return run(network.exec("web1", "python3", "-c", REDIS, DATA, str(REDIS_PORT), *commands)).stdout.splitlines()

    answers = redis("PING")
    assert answers[0].startswith("-NOAUTH"), answers  # no password: nothing
    settings = (shared.nodes["web1"].root / "etc/settings_local.py").read_text()
    secret = settings.split('REDIS_PASSWORD = "', 1)[1].split('"', 1)[0]
    answers = redis(f"AUTH {secret}", "PING", "CONFIG SET dir /tmp", "SHUTDOWN")
    assert answers[:2] == ["+OK", "+PONG"], answers  # the app's password: the cache
    assert all(answer.startswith("-NOPERM") for answer in answers[2:]), answers  # but no admin command
    assert network.connect("data", APPS["web1"], APP_PORT) == "refused"
    assert network.connect("lb", APPS["web1"], APP_PORT) == "connected"

    data = shared.nodes["data"]
    data.nft("delete", "table", "inet", data.table)
    try:
        tried = shared.psql("lb")
        assert tried.returncode != 0 and f'no pg_hba.conf entry for host "{LB}"' in tried.stderr, tried
        allowed = shared.psql("web2")
        assert allowed.returncode == 0 and allowed.stdout.strip() == "1", allowed
    finally:
        data.nft("-f", data.rules)
    wait_until(lambda: network.connect("lb", DATA, POSTGRESQL_PORT) == "refused", "the data host's rules again")


def test_a_stranger_reaches_no_port_of_the_install_on_any_host(shared: Site) -> None:
    """From an address that fleet.ini does not name, every one of the stage install's ten
    ports on the app hosts and the data host is refused (a TCP reset: nginx and clients move
    on at once), whatever listens there; the same sweep from the front reaches what the
    rules open to it: the app servers and the media store."""
    network = shared.network
    hosts = {**APPS, "data": DATA}
    targets = [f"{address}:{port}" for address in hosts.values() for port in range(STAGE, STAGE + 10)]
    network.ip_in("lb", "addr", "add", f"{STRANGER}/24", "dev", "br0")
    try:
        stranger = network.sweep("lb", targets, STRANGER)
    finally:
        network.ip_in("lb", "addr", "del", f"{STRANGER}/24", "dev", "br0")
    assert len(stranger) == len(targets), stranger
    assert {target: state for target, state in stranger.items() if state != "refused"} == {}, stranger
    front = network.sweep("lb", targets, LB)
    reached = sorted(target for target, state in front.items() if state == "connected")
    expected = [f"{APPS['web1']}:{APP_PORT}", f"{APPS['web2']}:{APP_PORT}", f"{DATA}:{MEDIA_PORT}"]
    assert reached == sorted(expected), front


def test_a_data_host_that_is_down_or_silent_gives_the_error_page_quickly_then_recovers(shared: Site) -> None:
    """The data host's servers stopped (connections refused), then the host silent (every
    packet dropped, as a dead machine): each app host answers the database page with the
    site's own 500 page within its timeouts (3 s to connect, 3 s for a kept connection),
    through the front too; when the data host is back, both answer again, nothing restarted."""
    data = shared.nodes["data"]

    def answers(limit: float) -> None:
        for host in APPS:
            started = time.monotonic()
            status, page = shared.direct("lb", host, "/visits/")
            took = time.monotonic() - started
            assert status == 500 and 'id="server-error"' in page and took < limit, (host, status, took, page[:200])
        assert shared.front_status("/visits/") == 500

    def recovered() -> bool:
        return all(shared.direct("lb", host, "/visits/")[0] == 200 for host in APPS)

    data.deploytool("down")
    try:
        answers(limit=5)
    finally:
        data.deploytool("up")
    wait_until(recovered, "both app hosts answering /visits/ again", timeout=30)

    assert recovered()  # each worker keeps a connection (CONN_MAX_AGE): the silence finds it
    shared.network.ip_in("data", "link", "set", "eth0", "down")  # a dead host: no reset, no answer
    try:
        answers(limit=10)
    finally:
        shared.network.ip_in("data", "link", "set", "eth0", "up")
    wait_until(recovered, "both app hosts answering /visits/ again", timeout=30)


NOTE_MIGRATION = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("SLUG", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Note",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("text", models.TextField()),
            ],
        ),
    ]
"""
NOTE_MODEL = '''


class Note(models.Model):
    """Added by release two: its migration runs once for the whole site."""

    text = models.TextField()
'''
STYLESHEET = re.compile(r'href="(/static/[^"]+\.css)"')


def test_a_rolling_deploy_migrates_once_and_every_page_finds_its_static_files(shared: Site) -> None:
    """Release two changes the stylesheet (a new hashed name) and adds a migration. Rolled
    out from lb to every host under load: the front first, then the data host, which
    migrates; the app hosts only reload. All the while, the pages of both app hosts (either
    revision) name stylesheets the front serves: no 404, and both names were seen."""
    slug, lb = shared.slug, shared.nodes["lb"]
    as_user = ["runuser", "-u", lb.user, "--"]
    css = shared.repo / slug / "static" / slug / "site.css"
    css.write_text(css.read_text() + "\nbody { outline: 0; } /* release two */\n")
    (shared.repo / slug / "migrations/0002_note.py").write_text(NOTE_MIGRATION.replace("SLUG", slug))
    models = shared.repo / slug / "models.py"
    models.write_text(models.read_text() + NOTE_MODEL)
    fleet = shared.repo / "etc/fleet.ini"  # a third app host joins: the data host must admit it
    fleet.write_text(fleet.read_text() + fleet_section(shared.repo.parent, "web3", WEB3, "app"))
    run([*as_user, *GIT, "add", "-A"], cwd=shared.repo)
    run([*as_user, *GIT, "commit", "-q", "-m", "Release two: notes, a new stylesheet"], cwd=shared.repo)

    seen: dict[str, set[int]] = {}  # stylesheet -> statuses the front gave
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for host in APPS:
                status, page = shared.direct("lb", host, "/visits/")
                for path in STYLESHEET.findall(page) if status == 200 else []:
                    seen.setdefault(path, set()).add(shared.front_status(path))
            stop.wait(0.5)

    watcher = threading.Thread(target=watch)
    load = wrk_argv(
        program("wrk", "wrk"),
        f"https://127.0.0.1:{HTTPS_PORT}/visits/",
        f"{shared.site}:{HTTPS_PORT}",
        lb.root.parent / "count.lua",
        240,
        2,  # kept-alive connections: the front's nginx is not reloaded here, the app hosts are
    )
    watcher.start()
    try:
        with under_load(shared.network.exec("lb", *load), settle=1) as traffic:
            deployed = lb.deploytool(
                "deploy",
                "--hosts",
                "web1,data,web2,lb",
                "--ssh-config",
                str(shared.ssh_config),
                "--health-timeout",
                "20",
                check=False,
            )
    finally:
        stop.set()
        watcher.join()
    out = deployed.stdout + deployed.stderr
    print(out)
    assert deployed.returncode == 0, out
    traffic.assert_nothing_failed(least=50)
    print(f"roll-out over 4 hosts under load: {traffic.requests} requests, 0 failed; stylesheets: {seen}")
    order = [out.index(f"fleet: {host} (") for host in ("lb", "data", "web1", "web2")]
    assert order == sorted(order), out  # the front first, then the others as given
    assert re.search(rf"^\[data\] deploy: migrate\s+{slug}\.0002_note", out, re.M), out
    for host in APPS:
        assert re.search(rf"^\[{host}\] deploy: migrate\s+not here: the roll-out's first host migrated", out, re.M)
    assert re.search(r"^\[lb\] deploy: reload\s+not here: no app server on this host \(roles: front\)", out, re.M), out
    recorded = (
        "from django.db.migrations.recorder import MigrationRecorder; "
        f"print(MigrationRecorder.Migration.objects.filter(app={slug!r}, name='0002_note').count())"
    )
    assert shared.manage("web2", recorded) == "1"
    made = f"from {slug}.models import Note; Note.objects.create(text='one'); print(Note.objects.count())"
    assert shared.manage("web1", made) == "1"
    # The data host's PostgreSQL and media store re-read what its deploy rendered from the new
    # fleet.ini: web3, prepared by the next test, is admitted.
    assert "[data] deploy:               postgresql re-read etc/postgresql/pg_hba.conf" in out, out
    assert f"[data] deploy:               media re-read etc/nginx/{shared.site}_media.conf" in out, out
    assert f"{WEB3}/32  scram-sha-256" in (shared.nodes["data"].root / "etc/postgresql/pg_hba.conf").read_text()
    assert len(seen) >= 2, seen  # the old stylesheet and release two's
    assert all(statuses == {200} for statuses in seen.values()), seen


def test_a_bare_host_is_prepared_joins_the_balancer_and_leaves_it_under_load(shared: Site) -> None:
    """web3 has the project user and sshd only. A commit adds it to app_upstreams (fleet.ini
    has it since release two, rolled out by the test before, to the operator's lb too);
    `deploy --hosts lb,web3` from lb under load rolls out the front, then prepares web3
    (checkout, the data host's settings, init, the user part) and prints the one root
    command; the admins' part done (in these sandboxes: the rules loaded, `up`), a deploy to
    web3 makes it live and the front sends it requests. A commit takes it out again: rolled
    out to the front, whose new config is put in place, then to the data host, which stops
    admitting it (in that order: web3 gets no request it could not answer). No request
    fails throughout."""
    lb, data, web3 = shared.nodes["lb"], shared.nodes["data"], shared.web3
    as_user = ["runuser", "-u", lb.user, "--"]
    answers = shared.repo / "etc/project.json"
    two = ", ".join(APPS.values())

    def commit(message: str, upstreams: str, fleet: str | None = None) -> None:
        """The answers' app_upstreams (and fleet.ini) changed, committed: what the developer pushes."""
        values = json.loads(answers.read_text())
        answers.write_text(json.dumps({**values, "app_upstreams": upstreams}, indent=2) + "\n")
        if fleet is not None:
            (shared.repo / "etc/fleet.ini").write_text(fleet)
        run([*as_user, *GIT, "commit", "-q", "-a", "-m", message], cwd=shared.repo)

    def deploy(hosts: str) -> tuple[subprocess.CompletedProcess[str], str]:
        done = lb.deploytool(
            "deploy", "--hosts", hosts, "--ssh-config", str(shared.ssh_config), "--health-timeout", "20", check=False
        )
        print(done.stdout + done.stderr)
        return done, done.stdout + done.stderr

    load = wrk_argv(
        program("wrk", "wrk"),
        f"https://127.0.0.1:{HTTPS_PORT}/visits/",
        f"{shared.site}:{HTTPS_PORT}",
        lb.root.parent / "count.lua",
        240,
        4,
        ["Connection: close"],  # the front's nginx reloads: its clients reconnect, as browsers do
    )
    fleet_without_web3 = (shared.repo / "etc/fleet.ini").read_text().split("[web3]", 1)[0]
    web3_section = fleet_section(shared.repo.parent, "web3", WEB3, "app")  # as release two added it
    commit("web3 joins the balancer", f"{two}, {WEB3}", fleet_without_web3 + web3_section)
    with under_load(shared.network.exec("lb", *load), settle=1) as traffic:
        prepared, out = deploy("lb,web3")
        lb.deploytool("up")  # the admin's part on the front: its nginx config in place, reloaded
    assert prepared.returncode == 4, out  # every host live, web3 prepared
    traffic.assert_nothing_failed(least=50)
    assert "[web3] copied the data host's etc/settings_local.py here (mode 600)" in out, out
    local = web3.root / "etc/settings_local.py"
    assert local.read_bytes() == (data.root / "etc/settings_local.py").read_bytes()
    assert oct(local.stat().st_mode & 0o777) == "0o600"
    env = web3.env
    assert (env["FLEET_HOST"], env["APP_BIND"], env["JOBS"]) == ("web3", WEB3, "off"), env
    summary = out[out.index("fleet: summary") :]
    line = next(line for line in summary.splitlines() if line.lstrip().startswith("web3"))
    assert re.match(r"^  web3\s+prepared\s", line), summary
    system_part = f"bin/deploytool --root {web3.root} install --part system && systemctl daemon-reload"
    assert f"as root: git clone -q {shared.repo} /usr/local/lib/dj-layout/{shared.site}" in line, line
    assert system_part in line and f"systemctl enable --now {shared.site}_gunicorn" in line, line
    assert line.endswith("then deploy --hosts web3)"), line

    # The admins' part, in these sandboxes: the rules loaded, web3's stack started.
    data.nft("-f", data.rules)  # the data host's system part: its rules now admit web3
    web3.deploytool("up")
    web3.nft("-f", web3.rules)
    joined, out = deploy("web3")
    assert joined.returncode == 0 and re.search(r"^  web3\s+live\s", out, re.M), out
    # gunicorn logs the requests it answers 4xx or 5xx: a page that does not exist, asked
    # through the front, shows in the log of the app host that answered it.
    access = web3.root / "logs/gunicorn.access.log"

    def answered() -> int:
        return access.read_text().count("/not-a-page/") if access.exists() else 0

    wait_until(lambda: shared.front_status("/not-a-page/") == 404 and answered() > 0, "the front sending web3 requests")
    commit("web3 leaves the balancer", two, fleet_without_web3)
    with under_load(shared.network.exec("lb", *load), settle=1) as traffic:
        left, out = deploy("lb")
        lb.deploytool("up")
        then, more = deploy("data")
    assert left.returncode == 0 and then.returncode == 0, out + more
    traffic.assert_nothing_failed(least=50)
    print(f"web3 joined and left under load: {traffic.requests} requests while it left, 0 failed")
    after = answered()
    assert all(shared.front_status("/not-a-page/") == 404 for _ in range(9))
    assert answered() == after  # no longer balanced to
    assert WEB3 not in (data.root / "etc/postgresql/pg_hba.conf").read_text()
