"""Several servers for real: nginx balancing over app servers on other hosts, a rolling
deploy over SSH with Fabric, and `deploytool ports --check`.

The "hosts" are network namespaces this module makes (ip netns, a bridge, veth pairs) with
private addresses that exist only inside them: lb 10.213.0.10 (the front nginx, and the
operator's checkout that runs the deploy), web1 10.213.0.11 and web2 10.213.0.12 (an app
server bound to that private address, their own nginx, and an sshd each). Every host has
its own clone of one origin repo (the filesystem is shared, so in its own folder), and runs
its whole stack as the project user. SSH keys and host keys are made here; known_hosts is
written from the host keys, and the deploy refuses any host key it does not hold.

Which host answered is told by /health/, which names the revision the host runs: web1 and
web2 start on two different commits. Ports: block 64800 inside the namespaces (the same
numbers on every host, as on real servers); the ports --check test uses 64800 and 64850 on
this machine's loopback, where nothing of this module listens otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import BLOCKS, GIT, bake_for_user, program, run, wait_until
from support.netns import ADDRESSES, HOSTS, LB_ADDRESS, Network, Node, make_ssh, sshd
from support.wrkload import Seen, under_load, wrk_argv

BLOCK = BLOCKS["fleet"]
SECOND_BLOCK = BLOCK + 50  # a second project's, for ports --check
APP_PORT, HTTPS_PORT = BLOCK + 1, BLOCK + 3  # the dev install's app server and sandbox nginx
UPSTREAMS = ", ".join(HOSTS.values())
HEALTH_TIMEOUT = "10"  # seconds a host's /health/ is given during a deploy


# ---- load and requests through the front nginx ---------------------------------------------------
@dataclass
class Fleet:
    network: Network
    lb: Node
    web: dict[str, Node]
    base: Path
    origin: Path
    work: Path
    ssh: Path
    site: str
    slug: str
    first: dict[str, str]  # host -> the commit it started on

    # ---- the front -----------------------------------------------------------------------------
    def front(self, balancing: str, upstreams: str = UPSTREAMS) -> None:
        """Change the balancing answers of the front's checkout and apply them (`up` again:
        render, put the site in place, nginx -t, reload)."""
        path = self.lb.root / "etc/project.json"
        answers = json.loads(path.read_text())
        if (answers["balancing"], answers["app_upstreams"]) != (balancing, upstreams):
            answers.update(balancing=balancing, app_upstreams=upstreams)
            path.write_text(json.dumps(answers, indent=2) + "\n")
            old = self.nginx_workers()
            self.lb.deploytool("up")
            self.wait_for_new_nginx_workers(old)
        site = (self.lb.root / f"etc/nginx/sites-available/{self.site}.nginx.conf").read_text()
        block = site[site.index("upstream ") : site.index("}", site.index("upstream "))]
        assert (balancing + ";" in block) == (balancing != "round_robin"), block

    def nginx_workers(self) -> set[str]:
        master = (self.lb.root / ".sandbox/run/nginx.pid").read_text().strip()
        return set(subprocess.run(["pgrep", "-P", master], capture_output=True, text=True).stdout.split())

    def wait_for_new_nginx_workers(self, old: set[str]) -> None:
        """A reload starts new workers; the old ones close their keep-alive connections as
        they go: measure once only new workers are left."""
        wait_until(lambda: (workers := self.nginx_workers()) and not workers & old, "only new nginx workers", 15)

    def wrk(self, seconds: int, connections: int, close: bool = False) -> list[str]:
        """wrk on the front's /health/, from inside lb, counting answers by revision (with
        ``close``, a new connection per request)."""
        url = f"https://127.0.0.1:{HTTPS_PORT}/health/"
        site, script = f"{self.site}:{HTTPS_PORT}", self.base / "count.lua"
        headers = ["Connection: close"] if close else []
        argv = wrk_argv(program("wrk", "wrk"), url, site, script, seconds, connections, headers)
        return self.network.exec("lb", *argv)

    def load(self, limit: int = 120, close: bool = False) -> AbstractContextManager[Seen]:
        """Load while the body runs (at most ``limit`` s), a second before and after it."""
        return under_load(self.wrk(limit, 8, close), settle=1)

    def burst(self, seconds: int, connections: int = 4) -> Seen:
        """A burst of ``seconds``; requests still in flight at its end are not counted."""
        result = Seen()
        result.parse(run(self.wrk(seconds, connections), timeout=seconds + 30).stdout)
        return result

    def health_from(self, client: str, count: int) -> list[str]:
        """/health/ through the front ``count`` times, from the source address ``client``."""
        url = f"https://{self.site}:{HTTPS_PORT}/health/"
        argv = self.network.exec(
            "lb",
            program("curl", "curl"),
            "-sS",
            "--fail",
            "--cacert",
            self.lb.root / ".sandbox/etc/ssl/sandbox-ca.pem",
            "--resolve",
            f"{self.site}:{HTTPS_PORT}:127.0.0.1",
            "--interface",
            client,
            *[url] * count,
        )
        out = run(argv).stdout
        return re.findall(r"^ok (\w+)$", out, re.M)

    # ---- the code --------------------------------------------------------------------------------
    def commit(self, message: str, branch: str = "main", **changes: str) -> str:
        """Commit ``changes`` (path -> text, SLUG = the package) on ``branch`` (made from main)
        in the developer's clone, and push it."""
        work = Node("lb", self.network, self.work, self.lb.user)
        work.git("fetch", "-q", "origin")
        work.git("checkout", "-q", "-B", branch, "origin/main")
        for name, text in changes.items():
            path = self.work / name.replace("SLUG", self.slug)
            path.write_text(text)
            shutil.chown(path, self.lb.user, self.lb.user)
        work.git("add", "-A")
        work.git("commit", "-q", "--allow-empty", "-m", message)
        work.git("push", "-q", "-f", "origin", branch)
        return work.head()

    def source(self, name: str) -> str:
        """A file as main has it."""
        work = Node("lb", self.network, self.work, self.lb.user)
        work.git("fetch", "-q", "origin")
        work.git("checkout", "-q", "-B", "main", "origin/main")
        return (self.work / name.replace("SLUG", self.slug)).read_text()

    def deploy(self, *args: str, ssh_config: Path | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
        """`deploytool deploy ... --hosts` from the front's checkout, as the project user."""
        config = ssh_config or self.ssh / "config"
        started = time.monotonic()
        proc = self.lb.deploytool(
            "deploy", *args, "--ssh-config", str(config), "--health-timeout", HEALTH_TIMEOUT, check=False
        )
        return proc, time.monotonic() - started

    def history(self, host: str) -> list[dict[str, Any]]:
        path = self.web[host].root / "data/deploy.json"
        return json.loads(path.read_text()).get("history", []) if path.exists() else []


# ---- the fleet ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fleet(project_user: str, project_venv: Path) -> Iterator[Fleet]:
    for name, package in (("sshd", "openssh-server"), ("ip", "iproute2"), ("wrk", "wrk"), ("curl", "curl")):
        program(name, package)
    privsep = Path("/run/sshd")  # sshd's privilege separation folder (the package makes it at boot)
    made_privsep = not privsep.exists()
    privsep.mkdir(mode=0o755, exist_ok=True)
    project = bake_for_user(
        project_user, project_venv, project_name="Fleet", port_block_start=BLOCK, app_upstreams=UPSTREAMS
    )
    base = project.parent
    network = Network()
    lb = Node("lb", network, project, project_user)
    stacks: list[Node] = []
    try:
        network.create()
        # The front's checkout is the repo's first commit; origin is a bare copy; "work" is
        # where the tests commit as a developer would.
        as_user = ["runuser", "-u", project_user, "--"]
        origin, work = base / "origin.git", base / "work"
        # The inventory, tracked: every host's clone has it. lb is the front (and the
        # operator's checkout), web1 and web2 the app hosts; each takes its section's roles.
        inventory = f"[lb]\naddress = {LB_ADDRESS}\nroot = {project}\nroles = front\n" + "".join(
            f"[{host}]\naddress = {address}\nroot = {base / host / 'fleet'}\nroles = app\n"
            for host, address in HOSTS.items()
        )
        (project / "etc/fleet.ini").write_text(inventory)
        shutil.chown(project / "etc/fleet.ini", project_user, project_user)
        lb.deploytool("init", "--install-type", "dev", "--fleet-host", "lb")
        run([*as_user, *GIT, "init", "-q", "-b", "main"], cwd=project)
        run([*as_user, *GIT, "add", "-A"], cwd=project)
        run([*as_user, *GIT, "commit", "-q", "-m", "Generated by dj-layout"], cwd=project)
        run([*as_user, *GIT, "clone", "-q", "--bare", project, origin], cwd=base)
        run([*as_user, *GIT, "remote", "add", "origin", origin], cwd=project)
        run([*as_user, *GIT, "clone", "-q", origin, work], cwd=base)
        first = {"web1": run([*as_user, "git", "-C", work, "rev-parse", "HEAD"]).stdout.strip()}
        run([*as_user, *GIT, "-C", work, "commit", "-q", "--allow-empty", "-m", "web2 starts one commit later"])
        run([*as_user, *GIT, "-C", work, "push", "-q", "origin", "main"])
        first["web2"] = run([*as_user, "git", "-C", work, "rev-parse", "HEAD"]).stdout.strip()

        web = {}
        for host, address in HOSTS.items():
            root = base / host / "fleet"  # the filesystem is shared: a folder per host
            run([*as_user, "mkdir", "-p", root.parent])
            run([*as_user, *GIT, "clone", "-q", origin, root], cwd=base)
            run([*as_user, *GIT, "-C", root, "reset", "-q", "--hard", first[host]])
            (root / "env3.11").symlink_to(project_venv)
            run(["chown", "-h", f"{project_user}:{project_user}", root / "env3.11"])
            node = Node(host, network, root, project_user)
            jobs = "on" if host == "web1" else "off"  # the scheduled jobs on one host only
            node.deploytool(
                "init", "--install-type", "dev", "--app-bind", address, "--jobs", jobs, "--fleet-host", host
            )
            web[host] = node

        ssh, host_keys, authorized = make_ssh(base, project_user)
        with ExitStack() as servers:
            for host in ADDRESSES:
                servers.enter_context(sshd(network, host, host_keys[host], authorized, project_user))
            started = time.monotonic()
            ups = {node.name: node.popen_deploytool("up") for node in (lb, *web.values())}
            stacks += [lb, *web.values()]
            for name, proc in ups.items():
                out, _ = proc.communicate(timeout=300)
                assert proc.returncode == 0, f"up on {name} failed:\n{out}"
            print(f"three stacks up in {time.monotonic() - started:.1f} s (in parallel)")
            # Every host's rules, as `deploytool render` wrote them from fleet.ini and the port
            # map, loaded in its own namespace: every test below runs behind them.
            for node in (lb, *web.values()):
                node.nft("-f", node.rules)
            slug = json.loads((project / "etc/project.json").read_text())["project_slug"]
            yield Fleet(network, lb, web, base, origin, work, ssh, lb.env["SITE"], slug, first)
    finally:
        for node in stacks:
            with suppress(subprocess.TimeoutExpired):
                node.deploytool("down", check=False)
        killed = network.remove()
        shutil.rmtree(base, ignore_errors=True)
        if made_privsep:
            privsep.rmdir()
        assert killed == [], f"processes were left in the test's namespaces (killed): {killed}"


# ---- the app servers bind their private address -------------------------------------------------
def test_app_servers_listen_on_their_private_address_only(fleet: Fleet) -> None:
    for host, address in HOSTS.items():
        node = fleet.web[host]
        assert node.env["APP_BIND"] == address
        assert f"socket: {address}:{APP_PORT}" in (node.root / "etc/uwsgi.yaml").read_text()
        app = [listen for listen in node.listening() if listen[1] == APP_PORT]
        assert app == [(address, APP_PORT)], app  # not 127.0.0.1, not 0.0.0.0
        # The sandbox nginx stays on loopback; the stats server is on a unix socket only.
        assert ("127.0.0.1", HTTPS_PORT) in node.listening()
        assert not [listen for listen in node.listening() if listen[1] == BLOCK + 2]
        assert Path(node.env["STATS_SOCKET"]).is_socket()
    assert fleet.lb.env["APP_BIND"] == ""  # the default: a unix socket, but
    assert not Path(fleet.lb.env["APP_SOCKET"]).exists()  # a front without the role app runs no app server
    assert "app server" not in fleet.lb.run(fleet.lb.root / "bin/deploytool", "status", check=False).stdout


# ---- the firewall between the roles ----------------------------------------------------------------
def test_the_rules_let_only_the_fronts_reach_an_app_server(fleet: Fleet) -> None:
    """Loaded on every host (the fixture), from fleet.ini's roles: web1's app port answers
    the front (lb) and refuses web2 (an app host, not a front) and an address of the private
    network that fleet.ini does not name; the install's other ports answer web1 itself only,
    even for a server that listens on every address."""
    web1 = HOSTS["web1"]
    assert fleet.network.connect("lb", web1, APP_PORT) == "connected"
    assert fleet.network.connect("web2", web1, APP_PORT) == "refused"
    stranger = "10.213.0.99"  # on the bridge, in no section of fleet.ini
    fleet.network.ip_in("lb", "addr", "add", f"{stranger}/24", "dev", "br0")
    spare = BLOCK + 9  # the install's spare port: a server on 0.0.0.0 there, as a careless one would
    listener = subprocess.Popen(
        fleet.network.exec(
            "web1",
            "python3",
            "-c",
            f"import socket, time; s = socket.create_server(('0.0.0.0', {spare})); time.sleep(60)",
        )
    )
    try:
        assert fleet.network.connect("lb", web1, APP_PORT, source=stranger) == "refused"
        wait_until(lambda: fleet.network.connect("web1", "127.0.0.1", spare) == "connected", "the spare listener")
        assert fleet.network.connect("web1", web1, spare) == "connected"  # the host itself, on its private address
        assert fleet.network.connect("lb", web1, spare) == "refused"
        assert fleet.network.connect("web2", web1, spare) == "refused"
        # The refusals are the rules' doing: without web1's table, web2 gets through.
        web1_node = fleet.web["web1"]
        web1_node.nft("delete", "table", "inet", web1_node.table)
        try:
            assert fleet.network.connect("web2", web1, APP_PORT) == "connected"
            assert fleet.network.connect("lb", web1, spare) == "connected"
        finally:
            web1_node.nft("-f", web1_node.rules)
        assert fleet.network.connect("web2", web1, APP_PORT) == "refused"
    finally:
        listener.kill()
        listener.wait()
        fleet.network.ip_in("lb", "addr", "del", f"{stranger}/24", "dev", "br0")


def test_loading_the_rules_again_replaces_them_in_one_step(fleet: Fleet) -> None:
    """`nft -f` three times: one table, the same rules (no doubled chain), the front's
    requests answered throughout, and an SSH session open meanwhile is never cut."""
    node = fleet.web["web2"]
    nft = program("nft", "nftables")
    # An SSH session into web2 that is open while the rules load, as an admin's would be.
    session = subprocess.Popen(
        fleet.network.exec(
            "lb",
            "runuser",
            "-u",
            node.user,
            "--",
            "ssh",
            "-F",
            fleet.ssh / "config",
            HOSTS["web2"],
            "sleep 3; echo alive",
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    with fleet.load(30) as traffic:
        time.sleep(1)  # the session is up
        for _ in range(3):
            node.nft("-f", node.rules)
    traffic.assert_nothing_failed()
    out, _ = session.communicate(timeout=30)
    assert session.returncode == 0 and out.strip() == "alive", (session.returncode, out)
    listed = run(fleet.network.exec("web2", nft, "list", "ruleset")).stdout
    assert listed.count("table inet ") == 1 and listed.count("reject with tcp reset") == 1, listed
    assert f"tcp dport {APP_PORT} ip saddr {LB_ADDRESS} accept" in listed, listed


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("0.0.0.0", "app bind address (--app-bind) 0.0.0.0 is the unspecified address"),
        ("192.0.2.0/24", "is not an IP address"),
        ("8.8.8.8", "app bind address (--app-bind) 8.8.8.8 is a public address"),
        ("10.213.0.99", "--app-bind 10.213.0.99: not an address of this host"),
    ],
)
def test_init_refuses_a_bind_address_it_cannot_or_must_not_use(fleet: Fleet, address: str, message: str) -> None:
    node = fleet.web["web1"]
    before = (node.root / "etc/env.conf").read_text()
    proc = node.deploytool("init", "--install-type", "dev", "--app-bind", address, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stdout + proc.stderr
    assert (node.root / "etc/env.conf").read_text() == before


# ---- nginx balances across the hosts -------------------------------------------------------------
def test_round_robin_reaches_both_hosts(fleet: Fleet) -> None:
    fleet.front("round_robin")
    traffic = fleet.burst(2)
    traffic.assert_nothing_failed()
    web1, web2 = traffic.share(fleet.first["web1"]), traffic.share(fleet.first["web2"])
    print(f"round robin: {traffic.requests} requests, web1 {web1:.0%}, web2 {web2:.0%}")
    assert web1 + web2 == 1 and 0.35 < web1 < 0.65, traffic.revisions


def test_weights_share_the_requests_accordingly(fleet: Fleet) -> None:
    web1, web2 = HOSTS.values()
    fleet.front("round_robin", f"{web1} weight=3, {web2}")
    try:
        traffic = fleet.burst(2)
    finally:
        fleet.front("round_robin")
    traffic.assert_nothing_failed()
    share = traffic.share(fleet.first["web1"])
    print(f"weights 3:1: {traffic.requests} requests, web1 {share:.0%}")
    assert 0.65 < share < 0.85, traffic.revisions


def test_ip_hash_keeps_each_client_on_one_host(fleet: Fleet) -> None:
    fleet.front("ip_hash")
    # Clients in different /24s (ip_hash hashes an IPv4 address's first three bytes); every
    # 127/8 address is this host's loopback, so curl can send from each.
    seen: dict[str, set[str]] = {}
    for n in range(1, 13):
        client = f"127.0.{n}.1"
        answers = fleet.health_from(client, 4)
        assert len(answers) == 4, answers
        seen[client] = set(answers)
    print("ip_hash: " + ", ".join(f"{client} -> {sorted(revs)[0][:7]}" for client, revs in seen.items()))
    assert all(len(revisions) == 1 for revisions in seen.values()), seen
    assert set().union(*seen.values()) == {fleet.first["web1"][:12], fleet.first["web2"][:12]}, seen


def test_least_conn_sends_requests_away_from_a_busy_host(fleet: Fleet) -> None:
    """web1 is frozen (SIGSTOP) for 3 s: its requests hang, so least_conn counts them as
    active and sends the rest to web2; round robin keeps sending web1 its half, which hang."""
    results = {}
    web1, web2 = fleet.first["web1"][:12], fleet.first["web2"][:12]
    for balancing in ("least_conn", "round_robin"):
        fleet.front(balancing)
        pids = fleet.web["web1"].app_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            traffic = fleet.burst(3, connections=8)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        traffic.assert_nothing_failed(least=1)  # round robin: most connections hang on web1
        results[balancing] = traffic
        counts = f"web2 {traffic.revisions.get(web2, 0)}, web1 {traffic.revisions.get(web1, 0)}"
        print(f"{balancing}, web1 frozen, 3 s of 8 connections: {traffic.requests} answered ({counts})")
    least, robin = results["least_conn"], results["round_robin"]
    assert least.revisions.get(web2, 0) > 5 * robin.revisions.get(web2, 0), (least.revisions, robin.revisions)
    assert least.share(fleet.first["web2"]) > 0.9, least.revisions


def test_an_app_host_leaves_and_joins_the_balancer_under_load(fleet: Fleet) -> None:
    """web2 taken out of app_upstreams and put back (`up` on the front: render, nginx -t,
    reload) while wrk runs through the front: no request fails, and in between only web1
    answers. A new connection per request, as the front's clients reconnect: a reload ends
    the old nginx workers' idle keep-alive connections, which wrk would count as read errors
    where a browser sends the request again."""
    fleet.front("round_robin")
    with fleet.load(close=True) as traffic:
        fleet.front("round_robin", HOSTS["web1"])
        alone = fleet.burst(1)
        fleet.front("round_robin")
    traffic.assert_nothing_failed()
    alone.assert_nothing_failed()
    assert set(alone.revisions) == {fleet.first["web1"][:12]}, alone.revisions
    print(f"web2 out and back in under load: {traffic.requests} requests, 0 failed")
    both = fleet.burst(2)
    assert set(both.revisions) == {fleet.first["web1"][:12], fleet.first["web2"][:12]}, both.revisions


def test_a_stopped_app_server_costs_no_request(fleet: Fleet) -> None:
    fleet.front("round_robin")
    web2 = fleet.web["web2"]
    error_log = fleet.lb.root / "logs/nginx.error.log"
    logged = len(error_log.read_text().splitlines()) if error_log.exists() else 0
    web2.run(web2.root / "bin/appctl.sh", "stop")
    try:
        traffic = fleet.burst(3)
    finally:
        web2.run(web2.root / "bin/appctl.sh", "start")
    traffic.assert_nothing_failed()
    print(f"web2's app server stopped: {traffic.requests} requests, 0 failed, all from web1: {traffic.revisions}")
    assert traffic.revisions == {fleet.first["web1"][:12]: traffic.ok}
    # nginx did try web2, and moved each of those requests on to web1.
    refused = [line for line in error_log.read_text().splitlines()[logged:] if "Connection refused" in line]
    assert refused and all(f"{HOSTS['web2']}:{APP_PORT}" in line for line in refused), refused[:3]
    # Started again, web2 is back in the rotation once its fail_timeout (10 s) has passed.
    deadline = time.monotonic() + 15
    while (share := fleet.burst(1).share(fleet.first["web2"])) < 0.4:
        assert time.monotonic() < deadline, f"web2 answers {share:.0%} of the requests 15 s after its restart"


# ---- the rolling deploy over SSH -----------------------------------------------------------------
def test_rolling_deploy_under_load_loses_nothing(fleet: Fleet) -> None:
    fleet.front("round_robin")
    readme = fleet.source("README.md")
    revision = fleet.commit("Release two", **{"README.md": readme + "\nRelease two.\n"})
    with fleet.load() as traffic:
        proc, seconds = fleet.deploy(revision, "--hosts", "web1,web2")
    out = proc.stdout + proc.stderr
    print(out)
    assert proc.returncode == 0, out
    traffic.assert_nothing_failed()
    print(f"rolling deploy to 2 hosts under load: {seconds:.1f} s, {traffic.requests} requests, 0 failed")
    first = f"web1 was {fleet.first['web1'][:12]}, web2 {fleet.first['web2'][:12]}"
    print(f"  answers by revision ({first}): {traffic.revisions}")
    # One host after the other: web1's deploy finished before web2's began.
    assert out.index("[web1] deploy: health") < out.index("fleet: web2")
    summary = out[out.index("fleet: summary") :]
    for host in HOSTS:
        assert re.search(rf"^  {host}\s+live\s+{fleet.first[host][:12]} -> {revision[:12]}", summary, re.M), summary
        assert fleet.web[host].head() == revision
        assert fleet.history(host)[0]["result"] == "live"
    assert set(traffic.revisions) <= {fleet.first["web1"][:12], fleet.first["web2"][:12], revision[:12]}
    assert traffic.revisions.get(revision[:12], 0) > 0
    assert set(fleet.burst(1).revisions) == {revision[:12]}  # every host runs it
    log = (fleet.web["web1"].root / "logs/deploy.log").read_text()
    assert f"{revision[:12]} is live" in log  # the host keeps its own record of the output


def test_the_scheduled_jobs_run_on_one_host_only(fleet: Fleet) -> None:
    """web1 runs the jobs (their timers are rendered there), web2 has none; a roll-out over
    two hosts that would both run them is refused before any deploy."""
    units = {
        host: sorted(p.name for p in (node.root / "etc/systemd/system").glob("*.timer"))
        for host, node in fleet.web.items()
    }
    site = fleet.site
    assert units == {"web1": [f"{site}_{job}.timer" for job in ("backup", "clearsessions", "watch")], "web2": []}, units
    web2 = fleet.web["web2"]
    before = {host: node.head() for host, node in fleet.web.items()}
    sandbox = ["--system-root", str(web2.root / ".sandbox")]  # `up` made it a sandbox: it stays one
    web2.deploytool("init", "--install-type", "dev", *sandbox, "--jobs", "on")
    try:
        proc, _ = fleet.deploy("--hosts", "web1,web2")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "nothing was deployed: web1 and web2 all run the scheduled jobs" in proc.stderr, proc.stderr
        assert "--jobs off" in proc.stderr and len(proc.stderr.splitlines()) == 1
        assert {host: node.head() for host, node in fleet.web.items()} == before
    finally:
        web2.deploytool("init", "--install-type", "dev", *sandbox, "--jobs", "off")
    assert not list((web2.root / "etc/systemd/system").glob("*.timer"))  # render removed them


def test_a_failing_host_stops_the_roll_out_and_the_site_keeps_serving(fleet: Fleet) -> None:
    live = {host: node.head() for host, node in fleet.web.items()}
    views = fleet.source("SLUG/views.py")
    breakage = {"SLUG/views.py": "import no_such_module  # noqa\n" + views}
    broken = fleet.commit("Breaks: views do not import", branch="broken", **breakage)
    with fleet.load() as traffic:
        proc, seconds = fleet.deploy(broken, "--hosts", "web1,web2")
    out = proc.stdout + proc.stderr
    print(out)
    traffic.assert_nothing_failed()
    print(f"failing roll-out under load: {seconds:.1f} s, {traffic.requests} requests, 0 failed, {traffic.revisions}")
    assert proc.returncode == 1, out
    summary = out[out.index("fleet: summary") :]
    assert re.search(rf"^  web1\s+rolled back\s+still {live['web1'][:12]}.*step 'check' failed", summary, re.M), summary
    assert re.search(rf"^  web2\s+not deployed\s+still {live['web2'][:12]}.*not touched", summary, re.M), summary
    assert "[web2]" not in out  # nothing ran there
    assert fleet.web["web1"].head() == live["web1"] and fleet.web["web2"].head() == live["web2"]
    assert fleet.history("web1")[0]["result"] == "rolled back"
    assert fleet.history("web2")[0]["revision"] != broken
    assert set(fleet.burst(1).revisions) == {live["web1"][:12]}


def test_an_unknown_or_changed_host_key_stops_everything_before_any_deploy(fleet: Fleet) -> None:
    revision = fleet.web["web1"].head()
    attempts = {host: len(fleet.history(host)) for host in HOSTS}
    ssh = fleet.ssh
    good = (ssh / "known_hosts").read_text().splitlines()
    other_key = (ssh / "id_ed25519.pub").read_text().split()[:2]  # some other ed25519 key
    cases = {
        "changed": (f"{good[0]}\n{HOSTS['web2']} {' '.join(other_key)}\n", "is NOT the one in known_hosts"),
        "unknown": (f"{good[0]}\n", f"web2: {HOSTS['web2']}:22's host key is not in known_hosts"),
    }
    for name, (known_hosts, message) in cases.items():
        (ssh / f"known_hosts.{name}").write_text(known_hosts)
        config = ssh / f"config.{name}"
        config.write_text(
            (ssh / "config").read_text().replace(str(ssh / "known_hosts"), str(ssh / f"known_hosts.{name}"))
        )
        for path in (config, ssh / f"known_hosts.{name}"):
            shutil.chown(path, fleet.lb.user, fleet.lb.user)
        proc, _ = fleet.deploy(revision, "--hosts", "web1,web2", ssh_config=config)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "nothing was deployed" in proc.stderr and message in proc.stderr, proc.stderr
    assert {host: len(fleet.history(host)) for host in HOSTS} == attempts  # no deploy ran anywhere


def test_a_backup_copied_to_another_server_restores_there(fleet: Fleet) -> None:
    """`backup --copy-to` from web1 to web2 over SSH (the operator's key, web2's known host
    key), then web2's install restores it, as on a new server after web1's disk died. A host
    key it does not hold stops the copy, and the backup stays where it was made."""
    web1, web2 = fleet.web["web1"], fleet.web["web2"]
    offsite = fleet.base / "web2" / "offsite"
    web2.run("mkdir", "-p", offsite)
    for _ in range(3):  # rows of web1's own: web2's database has none of them
        web1.run(
            "python3", "-c", f"import urllib.request; urllib.request.urlopen('http://{HOSTS['web1']}:1')", check=False
        )
    manage = [web1.root / "env3.11/bin/python", "manage.py", "shell", "--no-imports", "-c"]
    count = (
        f"from {fleet.slug}.models import Visit; Visit.objects.bulk_create([Visit()] * 7); print(Visit.objects.count())"
    )
    rows = web1.run(*manage, count).stdout.strip().splitlines()[-1]
    web1.run("mkdir", "-p", web1.root / "media/uploads")
    web1.run("dd", "if=/dev/urandom", f"of={web1.root / 'media/uploads/a.bin'}", "bs=64k", "count=1", "status=none")

    target = f"{fleet.lb.user}@{HOSTS['web2']}:{offsite}"
    out = web1.deploytool("backup", "--copy-to", target, "--ssh-config", str(fleet.ssh / "config")).stdout
    name = re.search(r"^backup: (\S+): ", out, re.M).group(1)  # type: ignore[union-attr]
    assert f"copied to {target}/{name}/" in out, out
    copy = offsite / name
    assert (copy / "manifest.json").is_file() and (copy / "media/uploads/a.bin").read_bytes() == (
        web1.root / "media/uploads/a.bin"
    ).read_bytes()

    restored = web2.deploytool("restore", str(copy)).stdout
    assert "/health/ answers 200" in restored, restored
    count_only = f"from {fleet.slug}.models import Visit; print(Visit.objects.count())"
    web2_manage = [web2.root / "env3.11/bin/python", "manage.py", "shell", "--no-imports", "-c", count_only]
    assert web2.run(*web2_manage).stdout.strip().splitlines()[-1] == rows
    assert (web2.root / "media/uploads/a.bin").read_bytes() == (web1.root / "media/uploads/a.bin").read_bytes()

    # web2's host key unknown: no copy, one line, the backup kept on web1.
    ssh = fleet.ssh
    (ssh / "known_hosts.web1-only").write_text((ssh / "known_hosts").read_text().splitlines()[0] + "\n")
    config = ssh / "config.web1-only"
    config.write_text(
        (ssh / "config").read_text().replace(str(ssh / "known_hosts"), str(ssh / "known_hosts.web1-only"))
    )
    for path in (config, ssh / "known_hosts.web1-only"):
        shutil.chown(path, fleet.lb.user, fleet.lb.user)
    refused = web1.deploytool("backup", "--copy-to", target, "--ssh-config", str(config), check=False)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused
    assert "is kept here, but the copy failed" in refused.stderr and "Host key verification failed" in refused.stderr
    kept = re.search(r"^deploytool backup: backup (\S+) is kept here", refused.stderr).group(1)  # type: ignore[union-attr]
    assert (web1.root / "backups" / kept / "manifest.json").is_file() and not (offsite / kept).exists()


def test_manage_and_logs_run_on_every_host_with_its_name(fleet: Fleet) -> None:
    """From the operator's checkout: `manage` and `logs` over SSH on both app hosts at once,
    each line with the host's name in front; the fleet's host-key rule holds for them too."""
    config = ["--ssh-config", str(fleet.ssh / "config")]
    shown = fleet.lb.deploytool("manage", "--hosts", "web1,web2", *config, "showmigrations", fleet.slug).stdout
    for host in ("web1", "web2"):
        assert re.search(rf"^\[{host}\]  \[X\] 0001_initial$", shown, re.M), shown
    logs = fleet.lb.deploytool("logs", "nginx", "-n", "3", "--hosts", "all", *config).stdout
    assert {line.split("] ", 1)[0] + "]" for line in logs.splitlines()} == {"[lb]", "[web1]", "[web2]"}, logs
    assert re.search(r"^\[web2\] nginx\.access\.log: ", logs, re.M), logs
    empty, strict = fleet.ssh / "known_hosts.empty", fleet.ssh / "config.empty"
    empty.write_text("")
    strict.write_text((fleet.ssh / "config").read_text().replace(str(fleet.ssh / "known_hosts"), str(empty)))
    for path in (empty, strict):
        shutil.chown(path, fleet.lb.user, fleet.lb.user)
    refused = fleet.lb.deploytool("manage", "--hosts", "web1", "--ssh-config", str(strict), "check", check=False)
    assert refused.returncode == 2 and "nothing was run: web1:" in refused.stderr, refused
    assert "host key is not in known_hosts" in refused.stderr, refused


def test_a_host_missing_from_the_inventory_is_refused(fleet: Fleet) -> None:
    proc, _ = fleet.deploy("HEAD", "--hosts", "web1,web3")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--hosts web3: not in" in proc.stderr and "(lb, web1, web2)" in proc.stderr, proc.stderr


def test_a_deploy_outlives_the_operators_lost_connection(fleet: Fleet) -> None:
    """The operator's deploy is killed (a laptop closed) in the middle of web1's deploy: web1
    finishes it all the same, web2 is left as it was."""
    web2 = fleet.web["web2"].head()
    readme = fleet.source("README.md")
    revision = fleet.commit("Release three", **{"README.md": readme + "\nRelease three.\n"})
    argv = fleet.network.exec("lb", "runuser", "-u", fleet.lb.user, "--", fleet.lb.root / "env3.11/bin/python")
    argv += ["-m", "deploytool", "deploy", revision, "--hosts", "web1,web2", "--ssh-config", str(fleet.ssh / "config")]
    operator = subprocess.Popen(
        argv, cwd=fleet.lb.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    assert operator.stdout is not None
    seen, deadline = "", time.monotonic() + 60
    while "[web1] deploy: migrate" not in seen:
        line = operator.stdout.readline()
        assert line and time.monotonic() < deadline, f"web1's deploy did not get to migrate:\n{seen}"
        seen += line
    os.killpg(operator.pid, signal.SIGKILL)  # the whole session: ip, runuser, python and ssh
    operator.communicate()
    deadline = time.monotonic() + 90
    while not fleet.history("web1") or fleet.history("web1")[0]["revision"] != revision:
        assert time.monotonic() < deadline, "web1's deploy did not finish after the operator went away"
        time.sleep(0.5)
    assert fleet.history("web1")[0]["result"] == "live"
    assert fleet.web["web1"].head() == revision and fleet.web["web2"].head() == web2
    assert f"{revision[:12]} is live" in (fleet.web["web1"].root / "logs/deploy.log").read_text()


# ---- ports --check ---------------------------------------------------------------------------------
def test_ports_check_finds_overlapping_blocks_and_taken_ports(project_user: str, project_venv: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="dj-layout-ports-"))
    os.chmod(home, 0o755)
    listener = socket.socket()
    try:
        installs = {}
        for name, block in (("alpha", BLOCK), ("beta", SECOND_BLOCK)):
            baked = bake_for_user(project_user, project_venv, project_name=name.title(), port_block_start=block)
            root = home / project_user / f"{name}.example" / "dev"  # seed 000: /home/<user>/<domain>/<type>
            root.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(baked, root)
            shutil.rmtree(baked.parent)
            run(["chown", "-R", f"{project_user}:{project_user}", home / project_user])
            # env.conf follows the checkout to its new place
            run(
                ["runuser", "-u", project_user, "--", root / "bin/deploytool", "render"],
                cwd=root,
            )
            installs[name] = root
        alpha, beta = installs["alpha"], installs["beta"]

        def check(as_root: bool = False) -> subprocess.CompletedProcess[str]:
            command = [alpha / "bin/deploytool", "ports", "--check", "--home-base", home]
            prefix = [] if as_root else ["runuser", "-u", project_user, "--"]
            return subprocess.run([*prefix, *map(str, command)], cwd=alpha, capture_output=True, text=True)

        clean = check()
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert f"beta.example dev ({beta}): block {SECOND_BLOCK}-{SECOND_BLOCK + 49}" in clean.stdout, clean.stdout
        assert "ok    no blocks or installs overlap (2 install(s), 2 project(s))" in clean.stdout
        assert f"ok    no other program holds a port of {BLOCK}-{BLOCK + 49}" in clean.stdout

        # beta's answer moved into alpha's block.
        answers = json.loads((beta / "etc/project.json").read_text())
        (beta / "etc/project.json").write_text(json.dumps({**answers, "port_block_start": BLOCK + 20}))
        overlapping = check()
        assert overlapping.returncode == 1, overlapping.stdout
        want = (
            f"FAIL  blocks overlap: alpha.example {BLOCK}-{BLOCK + 49} and beta.example {BLOCK + 20}-{BLOCK + 69} share"
        )
        assert want in overlapping.stdout, overlapping.stdout
        (beta / "etc/project.json").write_text(json.dumps(answers))

        # Another program (this test, as root) listens on alpha's PostgreSQL port.
        listener.bind(("127.0.0.1", BLOCK + 5))
        listener.listen()
        taken = check()
        assert taken.returncode == 1, taken.stdout
        assert (
            f"FAIL  port {BLOCK + 5} (postgresql) on 127.0.0.1 is held by another program: a program of user root"
            in taken.stdout
        ), taken.stdout
        named = check(as_root=True)  # root may see which program it is
        assert named.returncode == 1 and f"(pid {os.getpid()}, user root)" in named.stdout, named.stdout
        listener.close()

        # A home this user cannot read is named, not silently skipped.
        (home / "someone").mkdir(mode=0o700)
        hidden = check()
        assert hidden.returncode == 0, hidden.stdout
        assert f"unreadable: {home / 'someone'} (permission denied); run as root to check it" in hidden.stdout
        print("ports --check:\n" + overlapping.stdout + taken.stdout)
    finally:
        listener.close()
        shutil.rmtree(home)
