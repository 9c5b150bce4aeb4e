"""Benchmark of the generated stack, side by side with the seeds' configurations, the bare
app servers and a bare nginx, in one run, on loopback only.

    sudo .venv/bin/python -m bench.benchmark [--duration 6] [--connections 16] [--rounds 5] [--quick]

As root, like the tests (it creates their project user `djltest` if needed and runs every
server as that user). It bakes two projects (uWSGI with systemd's semantics, gunicorn under
supervisor; both `pro` installs, production settings, without basic auth on /admin/), brings
their stacks up with `deploytool up`, starts the other configurations next to them, then
measures every target with wrk (same threads, connections and duration for all; page by
page, rounds interleave the page's targets, every other round in reverse order; the table
gives the median, and each ratio is the median of the rounds' ratios):

- three dynamic pages, the same read-only Django views everywhere: /health/ (one query, a
  line of text: the lightest page, where the proxy's share is largest), Django admin's
  login form (templates, no query) and /visits/ (two queries, a template loop of 50 rows:
  a typical page). The home page writes a row per visit: it measures
  SQLite more than the stack, and is measured through the generated stacks only;
- the generated stack: nginx over HTTPS (the sandbox's certificate) to the app server;
- the seeds' own configurations behind a plain nginx (seed 001's nginx.conf): uWSGI with
  processes=10, threads=2 and Debian's stock uwsgi_params (seeds 002, 004), and
  `gunicorn -w 3 -t 60` proxied (seeds 001, 003); with the same certificate and nginx's
  default TLS settings added, so that every nginx-fronted target pays for TLS alike;
- `manage.py runserver`, and each bare app server hit directly over plain HTTP with the
  generated config (uWSGI's socket swapped for an HTTP/1.1 one): the ceiling for dynamic
  pages. A direct hit sends `X-Forwarded-Proto: https` as nginx would: the pro settings
  redirect plain HTTP to HTTPS otherwise;
- a minimal nginx TLS proxy (same certificate; nothing but `listen`, `ssl_*` and
  `location / { *_pass }` with the headers the app needs) in front of each generated stack's
  own app server: the ceiling for nginx's share of a proxied request. And the same over
  gunicorn with the generated config but gthread workers (2 threads, kept-alive connections
  from nginx): the paired measurement behind the generated sync workers;
- a static file (the hashed stylesheet) through the generated nginx, and through a minimal
  nginx (same certificate, no access log): the ceiling for static files;

each with requests/s, p99 latency, from /proc the CPU time nginx and the app server spent
per request (steadier than requests/s when other work shares the machine), and their
memory (PSS) idle and halfway through a run;
then the requests that fail while the generated stacks reload (`bin/appctl.sh reload`),
rotate their logs (logrotate), deploy a new revision (`deploytool deploy`), renew their
certificate (a new one in place, certbot's deploy hook run) and take a backup (`deploytool
backup`) under the same load, and the time of a bake, of an init and of `up` to the first HTTPS 200.

The targets, each a ratio within this run: CPU per request of each generated stack at most
0.95x that of the seeds' configuration for the same app server, and its p99 at most the
seed's, on every dynamic page; its app server's CPU per request at most 1.05x the bare app
server's, and its nginx's at most 1.1x the minimal proxy's over the same app server; its
memory idle and under load at most the seed's; static files at least as fast
as a minimal nginx; no failed request under any of those actions; a bake (its init
included) under 1 s and `up` under 3 s.
Prints a table, writes benchmark.png and benchmark.json (default: .cache/bench/), exits 1
when a target is missed. `--quick` measures the visits page only, 2 rounds of 3 s, and the
reload: a developer's check in under 3 minutes, not figures to quote. Ports: 64500-64549
and 64550-64599 (the two projects' blocks), 65000-65011 (seeds, bare servers, minimal
proxies, runserver).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from bench.common import (
    TEMPLATE,
    VENV_NAME,
    Baked,
    Stack,
    add_visits,
    as_user,
    bake,
    prepare,
    stack_up,
    table,
    tool,
)
from tests.support.wrkload import COUNT_LUA, Seen, under_load

# The dynamic pages, the same Django views in every configuration, read-only: path -> what
# a correct answer holds. /health/ is the lightest (one query, a line of text: the proxy's
# share is the largest there); Django admin's login form is a page of templates and no query
# (the stacks are baked without nginx's basic auth in front of /admin/, which would add a
# password hash per request that no other configuration pays).
PAGES = {
    "health": ("/health/", b"ok"),
    "admin login": ("/admin/login/", b"csrfmiddlewaretoken"),
    # a typical read-only page: two queries and a template loop over the 50 latest rows
    "visits": ("/visits/", b"<h1>Visits</h1>"),
}
QUICK_PAGES = ("visits",)  # --quick: one page, the typical one
HOME = "/"  # writes a row per visit (SQLite): measured through the generated stacks only
BLOCKS = {"uwsgi": 64500, "gunicorn": 64550}  # the two projects' blocks: pro installs at +20
# Production settings; no basic auth in front of /admin/ (see PAGES).
ANSWERS = {"install_type": "pro", "admin_basic_auth": "false"}
PORTS = {  # the other configurations, 65000-65011
    "seed_uwsgi": 65000,  # seed 002's uWSGI socket
    "seed_uwsgi_nginx": 65001,  # seed 004's site over it, HTTPS
    "seed_gunicorn": 65002,  # seed 001/003's gunicorn
    "seed_gunicorn_nginx": 65003,  # seed 003's site over it, HTTPS
    "bare_uwsgi": 65004,  # the generated uwsgi.yaml, HTTP/1.1 socket, no nginx
    "bare_uwsgi_stats": 65005,
    "bare_gunicorn": 65006,  # the generated gunicorn.conf.py, no nginx
    "runserver": 65007,
    "bare_nginx": 65008,  # minimal nginx for the static file, HTTPS
    # minimal nginx TLS proxies (listen, ssl_*, location / { *_pass }), HTTPS, over ...
    "min_uwsgi_nginx": 65009,  # ... the generated stack's own uWSGI
    "min_gunicorn_nginx": 65010,  # ... the generated stack's own gunicorn
    "min_gthread_nginx": 65011,  # ... gunicorn with the generated config but gthread workers
}
GIT = ["git", "-c", "user.name=dj-layout bench", "-c", "user.email=bench@dj-layout.invalid"]
LOAD_LIMIT = 180  # seconds: wrk under an action (reload, rotation, deploy) never runs longer
GRACE = 1.5  # seconds of load before and after each action
# Actions that reload nginx. nginx before 1.27.4 (Debian 12 has 1.22) closes its idle kept-alive
# client connections at once when its old workers shut down: a request sent on one in that
# instant is reset before nginx reads it. RFC 9112 (9.3.1, 9.5) leaves that race to the
# client, which may retry an idempotent request (browsers do; wrk does not). So these are
# measured twice: with kept-alive connections (shown, the race counted) and with a new
# connection per request, as a retrying client sees them (the target).
RELOADS_NGINX = ("certificate renewal",)

# wrk prints one machine-readable line; latencies in microseconds.
SUMMARY_LUA = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
    e.connect, e.read, e.write, e.timeout, e.status))
end
"""


# ---- measuring -------------------------------------------------------------------------------
@dataclass
class Run:
    """One wrk run: what it counted."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failed: int  # socket errors (connect, read, write, timeout) + bad statuses
    # CPU time the servers spent per request (their processes and the workers they reaped),
    # nginx's and the app server's: much steadier than requests/s on a machine shared with
    # other work. None where the target has no such process.
    nginx_us: float | None = None
    app_us: float | None = None
    # Memory of the same processes halfway through the run (PSS, MiB: a page shared by forked
    # workers counts once in all, not once per worker as RSS would).
    memory_mib: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Target:
    key: str
    label: str
    kind: str  # generated, seed, ceiling, paired (an alternative measured beside), dev server
    url: str
    host: str
    expect: bytes  # in the body of a correct answer
    headers: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    # The main processes serving it: "nginx" and/or "app" -> a pid, or a pid file.
    processes: dict[str, int | Path] = field(default_factory=dict)
    idle_mib: float | None = None  # its servers' memory after the warm-up, before any round

    def wrk_args(self) -> list[str]:
        args = ["-H", f"Host: {self.host}"]
        for header in self.headers:
            args += ["-H", header]
        return [*args, self.url]

    @property
    def page(self) -> str:
        return self.key.split(":")[1]

    @property
    def rps(self) -> float:
        return statistics.median(run.rps for run in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(run.p99_ms for run in self.runs)

    @property
    def failed(self) -> int:
        return sum(run.failed for run in self.runs)

    def cpu_us(self, which: str) -> float | None:
        values = [getattr(run, f"{which}_us") for run in self.runs]
        return statistics.median(values) if values and None not in values else None

    @property
    def total_us(self) -> float:
        """CPU per request of nginx and the app server together: the median of the rounds'."""
        return statistics.median((run.nginx_us or 0.0) + (run.app_us or 0.0) for run in self.runs)

    @property
    def memory_mib(self) -> float:
        return statistics.median(run.memory_mib or 0.0 for run in self.runs)


def ratio(a: Target, b: Target) -> float:
    """a's requests/s over b's: the median of the rounds' ratios (in each round of a page both
    are measured a minute apart at most, so a drift of the machine's speed between rounds
    cancels out)."""
    return statistics.median(x.rps / y.rps for x, y in zip(a.runs, b.runs, strict=True))


def process_times() -> dict[int, tuple[int, float, float]]:
    """pid -> (parent, own CPU seconds, CPU seconds of the children it reaped), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        own, reaped = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
        found[int(stat.parent.name)] = (int(fields[1]), own / tick, reaped / tick)
    return found


def tree_cpu(root: int, times: dict[int, tuple[int, float, float]]) -> float:
    """CPU seconds of a server: its main process, every descendant alive, every one reaped."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in times.items():
        children.setdefault(parent, []).append(pid)
    total = times[root][2] if root in times else 0.0
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in times:
            total += times[pid][1]
            todo += children.get(pid, [])
    return total


def tree_pss_mib(root: int) -> float:
    """PSS of a server, in MiB: its main process and every descendant (smaps_rollup, as root)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += [child for child, parent in parents.items() if parent == pid and child not in tree]
    total_kib = 0
    for pid in tree:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue  # gone meanwhile
        found = re.search(r"^Pss:\s+(\d+) kB", rollup, re.M)
        total_kib += int(found.group(1)) if found else 0
    return total_kib / 1024


def memory_of(target: Target) -> float:
    """The target's servers' memory now (nginx and app server), MiB."""
    return sum(tree_pss_mib(pid) for pid in main_pids(target).values())


def main_pids(target: Target) -> dict[str, int]:
    return {
        name: int(where.read_text().split()[0]) if isinstance(where, Path) else where
        for name, where in target.processes.items()
    }


def parse_wrk(output: str) -> Run:
    found = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", output, re.M)
    if not found:
        raise RuntimeError(f"wrk printed no summary:\n{output[-2000:]}")
    requests, micros, p50, p99, connect, read, write, timeout, status = map(int, found.groups())
    return Run(requests, micros / 1e6, p50 / 1e3, p99 / 1e3, connect + read + write + timeout + status)


def wrk_once(stack: Stack, path: str, connections: int, duration: int) -> Run:
    """One wrk run (2 threads) on ``path`` of a stack's site, with the summary script."""
    script = stack.project.parent / "summary.lua"
    script.write_text(SUMMARY_LUA)
    argv = [tool("wrk"), "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script)]
    argv += ["-H", f"Host: {stack.site}:{stack.https}", f"https://127.0.0.1:{stack.https}{path}"]
    return parse_wrk(subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout)


@dataclass
class Load:
    """wrk's threads, connections and duration: the same for every target."""

    threads: int
    connections: int
    duration: int
    scripts: Path

    def argv(self, script: str, duration: int) -> list[str]:
        return [
            tool("wrk"),
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(self.scripts / script),
        ]

    def measure(self, target: Target, duration: int | None = None) -> Run:
        seconds = duration or self.duration
        argv = [*self.argv("summary.lua", seconds), *target.wrk_args()]
        pids = main_pids(target)
        before = process_times()
        wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(seconds / 2)
        memory = memory_of(target)  # under load: every worker busy
        output, _ = wrk.communicate(timeout=seconds + 60)
        after = process_times()
        run = parse_wrk(output)
        run.memory_mib = memory
        for name, pid in pids.items():
            spent = tree_cpu(pid, after) - tree_cpu(pid, before)
            setattr(run, f"{name}_us", spent / run.requests * 1e6 if run.requests else None)
        return run

    def during(self, target: Target, reconnect: bool = False) -> AbstractContextManager[Seen]:
        """wrk against ``target`` while the body runs (bounded by LOAD_LIMIT), GRACE seconds
        before and after it, with a new connection per request if ``reconnect``; every answer
        that is not a 200 counts as failed."""
        close = ["-H", "Connection: close"] if reconnect else []
        return under_load([*self.argv("count.lua", LOAD_LIMIT), *close, *target.wrk_args()], settle=GRACE)


def get(url: str, host: str, headers: list[str]) -> tuple[int, bytes]:
    """One GET, to see that a target answers what it should before it is measured. TLS is
    not verified here (the certificate is the sandbox's; the check is for the answer)."""
    scheme, _, rest = url.partition("://")
    address, _, path = rest.partition("/")
    name, _, port = address.partition(":")
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(name, int(port), context=ssl._create_unverified_context(), timeout=10)
    else:
        conn = http.client.HTTPConnection(name, int(port), timeout=10)
    try:
        conn.request("GET", "/" + path, headers={"Host": host, **dict(h.split(": ", 1) for h in headers)})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_answers(target: Target, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + 60
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"{target.label}: its server exited ({proc.returncode}):\n{tail}")
        try:
            status, body = get(target.url, target.host, target.headers)
            if status == 200 and target.expect in body:
                return
            last = f"HTTP {status}: {body[:200]!r}"
        except (OSError, http.client.HTTPException) as error:
            last = repr(error)
        time.sleep(0.25)
    raise RuntimeError(f"{target.label} ({target.url}) does not answer 200 with {target.expect!r}: {last}")


# ---- the other configurations, run as the project user ---------------------------------------
class Servers:
    """Processes started as the project user, each in a session of its own; stopped in
    reverse order (the signal to the main process, SIGKILL to the group after 30 s)."""

    def __init__(self, user: str, folder: Path) -> None:
        self.user = pwd.getpwnam(user)
        self.folder = folder
        self.started: list[tuple[str, subprocess.Popen[bytes], signal.Signals, IO[bytes]]] = []

    def start(
        self, name: str, argv: list[str | Path], cwd: Path, stop: signal.Signals
    ) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.folder / f"{name}.out"  # its stdout and stderr
        handle = open(log, "ab")  # noqa: SIM115  (closed in stop_all)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": self.user.pw_dir,
            "USER": self.user.pw_name,
            "LANG": "C.UTF-8",
        }
        proc = subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            user=self.user.pw_uid,
            group=self.user.pw_gid,
            extra_groups=[],
            start_new_session=True,
        )
        self.started.append((name, proc, stop, handle))
        return proc, log

    def stop_all(self) -> None:
        for _name, proc, stop, handle in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(stop)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever of its group is left
            except ProcessLookupError:
                pass
            proc.wait()
            handle.close()
        self.started.clear()


def nginx_conf(folder: Path, http_block: str) -> Path:
    """A whole nginx.conf for nginx run by the project user: its pid and temp files in folder."""
    conf = folder / "nginx.conf"
    conf.write_text(
        f"""pid {folder}/nginx.pid;
worker_processes 2;  # as the generated sandbox's nginx.conf and seed 001: the 2 cores
events {{
    worker_connections 1024;
}}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    uwsgi_temp_path {folder}/uwsgi;
    fastcgi_temp_path {folder}/fastcgi;
    scgi_temp_path {folder}/scgi;
{http_block}
}}
"""
    )
    return conf


def start_nginx(servers: Servers, name: str, folder: Path, http_block: str) -> tuple[subprocess.Popen[bytes], Path]:
    folder.mkdir()
    shutil.chown(folder, servers.user.pw_name, servers.user.pw_name)
    conf = nginx_conf(folder, http_block)
    argv: list[str | Path] = ["nginx", "-c", conf, "-e", folder / "error.log", "-g", "daemon off;"]
    return servers.start(name, argv, folder, signal.SIGTERM)


def tls(stack: Stack) -> str:
    """The generated site's certificate (the sandbox CA's), for every other nginx too."""
    cert = stack.sandbox / "etc/ssl/sandbox" / stack.site
    return f'ssl_certificate "{cert}/fullchain.pem";\n        ssl_certificate_key "{cert}/privkey.pem";'


def seed_site_uwsgi(stack: Stack, port: int) -> str:
    """Seed 004's site (uwsgi_pass + stock uwsgi_params), HTTPS added; seed 001's http settings."""
    root = stack.project
    return f"""    {SEED_001_HTTP.format(logs=root.parent / "seed-nginx")}
    server {{
        listen 127.0.0.1:{PORTS["seed_uwsgi_nginx"]} ssl;  # added: TLS as the generated site
        {tls(stack)}
        server_name {stack.site};
        charset utf-8;
        location /static {{
            alias {root}/static/;
        }}
        location /media {{
            alias {root}/media/;
        }}
        location / {{
            uwsgi_pass 127.0.0.1:{port};
            include /etc/nginx/uwsgi_params;
        }}
    }}"""


def seed_site_gunicorn(stack: Stack, port: int) -> str:
    """Seed 003's site (proxy_pass, its four headers), HTTPS added; seed 001's http settings."""
    root = stack.project
    return f"""    {SEED_001_HTTP.format(logs=root.parent / "seed-nginx")}
    server {{
        listen 127.0.0.1:{PORTS["seed_gunicorn_nginx"]} ssl;  # added: TLS as the generated site
        {tls(stack)}
        server_name {stack.site};
        location / {{
            proxy_pass http://127.0.0.1:{port};
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
        location /static/ {{
            alias {root}/static/;
        }}
        location /media/ {{
            alias {root}/media/;
        }}
    }}"""


# Seed 001's nginx.conf, its http block (minus what the folder-local main conf sets).
SEED_001_HTTP = """sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 15;
    types_hash_max_size 2048;
    access_log {logs}/access.log;
    gzip on;
    gzip_disable "msie6";
    gzip_vary on;
    gzip_proxied any;
    gzip_comp_level 6;
    gzip_buffers 16 8k;
    gzip_http_version 1.1;
    gzip_types text/plain text/css application/json application/x-javascript
               text/xml application/xml application/xml+rss text/javascript;"""


def seed_uwsgi_ini(stack: Stack, folder: Path) -> Path:
    """Seed 002's uwsgi.ini, as written there (daemonize aside: the log is its output here)."""
    ini = folder / "seed-uwsgi.ini"
    ini.write_text(
        f"""[uwsgi]
socket = 127.0.0.1:{PORTS["seed_uwsgi"]}
chdir = {stack.project}
module = {stack.answers["project_slug"]}.wsgi
home = {stack.project / VENV_NAME}
master = true
processes = 10
threads = 2
chmod-socket = 664
vacuum = true
"""
    )
    return ini


def bare_uwsgi_yaml(stack: Stack, folder: Path) -> Path:
    """The generated uwsgi.yaml as it is, but for an HTTP/1.1 socket (keep-alive) in place of
    the uwsgi socket, and files and ports of its own."""
    text = Path(stack.env["APP_CONFIG"]).read_text()
    swaps = {
        "socket": f"http11-socket: 127.0.0.1:{PORTS['bare_uwsgi']}",
        "stats": f"stats: 127.0.0.1:{PORTS['bare_uwsgi_stats']}",
        "pidfile": f"pidfile: {folder}/bare-uwsgi.pid",
        "master-fifo": f"master-fifo: {folder}/bare-uwsgi.fifo",
        "logto": f"logto: {folder}/bare-uwsgi.log",
        "touch-logreopen": f"touch-logreopen: {folder}/bare-uwsgi.logreopen",
    }
    for key, line in swaps.items():
        text, count = re.subn(rf"^  {re.escape(key)}: .*$", f"  {line}", text, flags=re.M)
        if count != 1:
            raise RuntimeError(f"{stack.env['APP_CONFIG']}: no single `{key}:` line to swap")
    yaml = folder / "bare-uwsgi.yaml"
    yaml.write_text(text)
    return yaml


def bare_gunicorn_conf(stack: Stack, folder: Path) -> Path:
    """The generated gunicorn.conf.py as it is, then its own port and files."""
    generated = Path(stack.env["APP_CONFIG"])
    lines = [
        f"exec(open({str(generated)!r}).read())",
        f"bind = ['127.0.0.1:{PORTS['bare_gunicorn']}']",
        f"pidfile = {str(folder / 'bare-gunicorn.pid')!r}",
        f"errorlog = {str(folder / 'bare-gunicorn.error.log')!r}",
    ]
    if re.search(r"^accesslog = ", generated.read_text(), re.M):  # an access log (4xx and 5xx lines): here too
        lines.append(f"accesslog = {str(folder / 'bare-gunicorn.access.log')!r}")
    conf = folder / "bare-gunicorn.conf.py"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def gthread_gunicorn_conf(stack: Stack, folder: Path) -> Path:
    """The generated gunicorn.conf.py as it is, but for gthread workers (2 threads each, idle
    connections kept 5 s), on a unix socket and files of its own."""
    lines = [
        f"exec(open({stack.env['APP_CONFIG']!r}).read())",
        'worker_class = "gthread"',
        "threads = 2",
        "keepalive = 5",
        f"bind = ['unix:{folder / 'gthread-gunicorn.sock'}']",
        f"pidfile = {str(folder / 'gthread-gunicorn.pid')!r}",
        f"errorlog = {str(folder / 'gthread-gunicorn.error.log')!r}",
        f"accesslog = {str(folder / 'gthread-gunicorn.access.log')!r}",
    ]
    conf = folder / "gthread-gunicorn.conf.py"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def minimal_proxy(stack: Stack, key: str, upstream: Path) -> str:
    """The leanest nginx TLS proxy that answers the pages right: listen, the certificate, and
    the pass (uwsgi_params for uWSGI; for HTTP, the Host and scheme Django checks); no log."""
    if key == "uwsgi":
        passing = f"uwsgi_pass unix:{upstream};\n            include /etc/nginx/uwsgi_params;"
    else:
        passing = (
            f"proxy_pass http://unix:{upstream}:;\n"
            "            proxy_set_header Host $host;\n"
            "            proxy_set_header X-Forwarded-Proto $scheme;"
        )
    return f"""    access_log off;
    server {{
        listen 127.0.0.1:{PORTS[f"min_{key}_nginx"]} ssl;
        {tls(stack)}
        location / {{
            {passing}
        }}
    }}"""


# ---- the stacks ------------------------------------------------------------------------------
@dataclass
class Timing:
    what: str
    seconds: float


@dataclass
class UnderLoad:
    stack: str
    action: str
    requests: int
    failed: int
    seconds: float  # the action's own
    ok: bool
    note: str = ""
    target: bool = True  # counted against the target of 0 failed (see RELOADS_NGINX)


def hashed_css(stack: Stack) -> str:
    manifest = json.loads((stack.project / "static/staticfiles.json").read_text())
    slug = stack.answers["project_slug"]
    return "/static/" + manifest["paths"][f"{slug}/site.css"]


def git_checkout(stack: Stack) -> tuple[Path, Path]:
    """The install as a git checkout tracking a bare origin, and a developer's clone of it
    (as tests/test_lifecycle.py does): what `deploytool deploy` works on."""
    base = stack.project.parent
    origin, work = base / "origin.git", base / "work"
    for argv in (
        [*GIT, "init", "-q", "-b", "main"],
        [*GIT, "add", "-A"],
        [*GIT, "commit", "-q", "-m", "Generated by dj-layout"],
        [*GIT, "clone", "-q", "--bare", stack.project, origin],
        [*GIT, "remote", "add", "origin", origin],
        [*GIT, "fetch", "-q", "origin"],
        [*GIT, "branch", "-q", "--set-upstream-to", "origin/main"],
        [*GIT, "clone", "-q", origin, work],
    ):
        stack.as_user(*argv)
    return origin, work


def time_init(stack: Stack, origin: Path, venv: Path) -> float:
    """`deploytool init` in a fresh clone, as on a server: secrets, htpasswd, links, render."""
    clone = stack.project.parent / "init-clone"
    stack.as_user(*GIT, "clone", "-q", origin, clone)
    started = time.monotonic()
    proc = as_user(stack.user, venv / "bin/python", "-m", "deploytool", "init", "--install-type", "stage", cwd=clone)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"deploytool init failed: {proc.stderr}")
    shutil.rmtree(clone)
    return seconds


def actions(stack: Stack, work: Path) -> list[tuple[str, Callable[[], str]]]:
    """What runs under load on a generated stack: name -> action (returns a note)."""
    ctl = stack.project / "bin/appctl.sh"
    uwsgi = stack.answers["app_server"] == "uwsgi"

    def reload() -> str:
        outputs = [stack.as_user(ctl, "reload").stdout.strip()]
        if uwsgi:  # a changed uwsgi.yaml: HUP (re-reads it) instead of the chain reload
            time.sleep(1.1)  # mtimes in whole seconds
            stack.as_user("touch", stack.env["APP_CONFIG"])
            outputs.append(stack.as_user(ctl, "reload").stdout.strip())
        return "; ".join(re.sub(r"^.*reloaded \((.+?), pid \d+\)$", r"\1", out) for out in outputs)

    def rotate() -> str:
        conf = next((stack.sandbox / "etc/logrotate.d").iterdir())
        stack.as_user(tool("logrotate"), "-s", stack.sandbox / "logrotate.state", "-f", conf)
        rotated = sorted(path.name for path in (stack.project / "logs").iterdir() if path.name.endswith(".log.1"))
        return "rotated " + ", ".join(rotated)

    def deploy() -> str:
        slug = stack.answers["project_slug"]
        page = work / slug / "templates" / slug / "home.html"
        stack.as_user(*GIT, "-C", work, "pull", "-q")
        text = page.read_text()
        page.write_text(text.replace("</h1>", f'</h1>\n  <p id="release">Release {time.time_ns()}</p>', 1))
        stack.as_user(*GIT, "-C", work, "commit", "-q", "-a", "-m", "A new release")
        stack.as_user(*GIT, "-C", work, "push", "-q", "origin", "main")
        proc = stack.deploytool("deploy", check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"deploytool deploy exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return proc.stdout.strip().splitlines()[-1].removeprefix("deploy: ")

    def renew() -> str:
        """What a renewal does to the serving stack: certbot puts a new certificate in place
        and runs the deploy hook, which tests nginx's config and reloads it."""
        folder = stack.sandbox / "etc/ssl/sandbox" / stack.site
        old, new, request = (folder / name for name in ("fullchain.pem", "renewed.pem", "renewal.csr"))
        ca, key = stack.ca, folder / "privkey.pem"
        openssl = tool("openssl")
        stack.as_user(
            *(openssl, "x509", "-x509toreq", "-copy_extensions", "copy", "-in", old, "-signkey", key, "-out", request)
        )
        stack.as_user(
            *(openssl, "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca.with_suffix(".key")),
            *("-copy_extensions", "copy", "-set_serial", str(time.time_ns()), "-days", "90", "-out", new),
        )
        stack.as_user("mv", "-f", new, old)
        stack.as_user("rm", "-f", request)
        stack.as_user(stack.sandbox / f"etc/letsencrypt/renewal-hooks/deploy/{stack.site}.sh")
        serial = stack.as_user(openssl, "x509", "-noout", "-serial", "-in", old).stdout.strip()
        return f"new certificate ({serial.lower()}), nginx reloaded by the deploy hook"

    def backup() -> str:
        proc = stack.deploytool("backup", check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"deploytool backup exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        taken = re.search(r"^backup: (\S+: .+ in [\d.]+ s)$", proc.stdout, re.M)  # its name, size and time
        return taken.group(1) if taken else proc.stdout.strip().splitlines()[-1]

    found: list[tuple[str, Callable[[], str]]] = [("appctl.sh reload", reload), ("logrotate -f", rotate)]
    if (stack.project / "deploytool/deploy.py").exists():
        found.append(("deploytool deploy", deploy))
    found += [("certificate renewal", renew), ("deploytool backup", backup)]
    return found


# ---- the run ---------------------------------------------------------------------------------
@dataclass
class Results:
    threads: int
    connections: int
    duration: int
    rounds: int
    cores: int
    load_before: float
    pages: tuple[str, ...] = tuple(PAGES)
    load_after: float = 0.0
    targets: list[Target] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)
    under_load: list[UnderLoad] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def target(self, key: str) -> Target:
        return next(t for t in self.targets if t.key == key)


def bring_up(name: str, baked: Baked, timings: list[Timing], stacks: ExitStack) -> Stack:
    stack, seconds = stacks.enter_context(stack_up(baked))
    started = time.monotonic()
    status, _, _ = stack.https_get("/")  # the first page a user asks for (by name, trusting the CA)
    if status != 200:
        raise RuntimeError(f"{name}: / answered {status} after up")
    timings.append(Timing(f"up to the first HTTPS 200 ({name})", seconds + time.monotonic() - started))
    return stack


def targets_for(uwsgi: Stack, gunicorn: Stack, started: dict[str, subprocess.Popen[bytes]]) -> list[Target]:
    """Each configuration with each dynamic page, then the static file, then the home page."""
    pid = {name: proc.pid for name, proc in started.items()}
    processes: dict[str, dict[str, int | Path]] = {
        "gen_uwsgi": {"nginx": uwsgi.sandbox / "run/nginx.pid", "app": Path(uwsgi.env["PIDFILE"])},
        "bare_uwsgi": {"app": pid["bare_uwsgi"]},
        "seed_uwsgi": {"nginx": pid["seed_uwsgi_nginx"], "app": pid["seed_uwsgi"]},
        "gen_gunicorn": {"nginx": gunicorn.sandbox / "run/nginx.pid", "app": Path(gunicorn.env["PIDFILE"])},
        "bare_gunicorn": {"app": pid["bare_gunicorn"]},
        "seed_gunicorn": {"nginx": pid["seed_gunicorn_nginx"], "app": pid["seed_gunicorn"]},
        "runserver": {"app": pid["runserver"]},
        "gen_nginx": {"nginx": uwsgi.sandbox / "run/nginx.pid"},
        "bare_nginx": {"nginx": pid["bare_nginx"]},
        "min_uwsgi": {"nginx": pid["min_uwsgi_nginx"], "app": Path(uwsgi.env["PIDFILE"])},
        "min_gunicorn": {"nginx": pid["min_gunicorn_nginx"], "app": Path(gunicorn.env["PIDFILE"])},
        "min_gthread": {"nginx": pid["min_gthread_nginx"], "app": pid["gthread_gunicorn"]},
    }
    forwarded = ["X-Forwarded-Proto: https"]  # what nginx tells the app on a direct hit
    site = uwsgi.site
    via_u, via_g = f"{site}:{uwsgi.https}", f"{site}:{gunicorn.https}"
    # key, label, kind, scheme://127.0.0.1:port, Host, headers
    configs = [
        ("gen_uwsgi", "generated: nginx HTTPS -> uWSGI", "generated", f"https://127.0.0.1:{uwsgi.https}", via_u, []),
        (
            "bare_uwsgi",
            "bare uWSGI, generated config",
            "ceiling",
            f"http://127.0.0.1:{PORTS['bare_uwsgi']}",
            site,
            forwarded,
        ),
        (
            "seed_uwsgi",
            "seeds 002+004: nginx -> uWSGI 10x2",
            "seed",
            f"https://127.0.0.1:{PORTS['seed_uwsgi_nginx']}",
            site,
            [],
        ),
        (
            "gen_gunicorn",
            "generated: nginx HTTPS -> gunicorn",
            "generated",
            f"https://127.0.0.1:{gunicorn.https}",
            via_g,
            [],
        ),
        (
            "bare_gunicorn",
            "bare gunicorn, generated config",
            "ceiling",
            f"http://127.0.0.1:{PORTS['bare_gunicorn']}",
            site,
            forwarded,
        ),
        (
            "seed_gunicorn",
            "seeds 001+003: nginx -> gunicorn -w 3",
            "seed",
            f"https://127.0.0.1:{PORTS['seed_gunicorn_nginx']}",
            site,
            [],
        ),
        ("runserver", "manage.py runserver", "dev server", f"http://127.0.0.1:{PORTS['runserver']}", site, forwarded),
        *(
            (
                f"min_{key}",
                f"minimal nginx HTTPS -> {label}",
                kind,
                f"https://127.0.0.1:{PORTS[f'min_{key}_nginx']}",
                site,
                [],
            )
            for key, label, kind in (
                ("uwsgi", "generated uWSGI", "ceiling"),
                ("gunicorn", "generated gunicorn", "ceiling"),
                ("gthread", "gunicorn gthread workers", "paired"),
            )
        ),
    ]
    targets = [
        Target(f"{key}:{page}", f"{label} | {page}", kind, base + path, host, expect, headers)
        for page, (path, expect) in PAGES.items()
        for key, label, kind, base, host, headers in configs
    ]
    css = hashed_css(uwsgi)
    targets += [
        Target(
            "gen_nginx:static",
            "generated nginx HTTPS | static",
            "generated",
            f"https://127.0.0.1:{uwsgi.https}{css}",
            via_u,
            b"font",
        ),
        Target(
            "bare_nginx:static",
            "minimal nginx HTTPS | static",
            "ceiling",
            f"https://127.0.0.1:{PORTS['bare_nginx']}{css}",
            site,
            b"font",
        ),
        Target(
            "gen_uwsgi:home",
            "generated: nginx HTTPS -> uWSGI | home",
            "generated",
            f"https://127.0.0.1:{uwsgi.https}{HOME}",
            via_u,
            b"Visits",
        ),
        Target(
            "gen_gunicorn:home",
            "generated: nginx HTTPS -> gunicorn | home",
            "generated",
            f"https://127.0.0.1:{gunicorn.https}{HOME}",
            via_g,
            b"Visits",
        ),
    ]
    for target in targets:
        target.processes = processes[target.key.split(":")[0]]
    return targets


def start_others(
    servers: Servers, uwsgi: Stack, gunicorn: Stack, folder: Path
) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
    """Seeds, bare app servers, runserver and the bare nginx, as the project user."""
    for stack in (uwsgi, gunicorn):  # seed 001/003's nginx logs, and this run's files
        (stack.project.parent / "seed-nginx").mkdir(exist_ok=True)
        shutil.chown(stack.project.parent / "seed-nginx", stack.user, stack.user)
    venv_bin = uwsgi.project / VENV_NAME / "bin"
    started = {
        "seed_uwsgi": servers.start(
            "seed-uwsgi", [venv_bin / "uwsgi", "--ini", seed_uwsgi_ini(uwsgi, folder)], uwsgi.project, signal.SIGINT
        ),
        "seed_gunicorn": servers.start(
            "seed-gunicorn",
            [
                venv_bin / "gunicorn",
                "-w",
                "3",
                "-t",
                "60",
                "--bind",
                f"127.0.0.1:{PORTS['seed_gunicorn']}",
                f"{gunicorn.answers['project_slug']}.wsgi",
            ],
            gunicorn.project,
            signal.SIGTERM,
        ),
        "bare_uwsgi": servers.start(
            "bare-uwsgi", [venv_bin / "uwsgi", "--yaml", bare_uwsgi_yaml(uwsgi, folder)], uwsgi.project, signal.SIGINT
        ),
        "bare_gunicorn": servers.start(
            "bare-gunicorn",
            [venv_bin / "gunicorn", "--config", bare_gunicorn_conf(gunicorn, folder)],
            gunicorn.project,
            signal.SIGTERM,
        ),
        "runserver": servers.start(
            "runserver",
            [venv_bin / "python", "manage.py", "runserver", f"127.0.0.1:{PORTS['runserver']}", "--noreload"],
            uwsgi.project,
            signal.SIGTERM,
        ),
    }
    started["seed_uwsgi_nginx"] = start_nginx(
        servers, "seed-nginx-uwsgi", folder / "seed-nginx-uwsgi", seed_site_uwsgi(uwsgi, PORTS["seed_uwsgi"])
    )
    started["seed_gunicorn_nginx"] = start_nginx(
        servers,
        "seed-nginx-gunicorn",
        folder / "seed-nginx-gunicorn",
        seed_site_gunicorn(gunicorn, PORTS["seed_gunicorn"]),
    )
    started["gthread_gunicorn"] = servers.start(
        "gthread-gunicorn",
        [venv_bin / "gunicorn", "--config", gthread_gunicorn_conf(gunicorn, folder)],
        gunicorn.project,
        signal.SIGTERM,
    )
    for key, stack, upstream in (
        ("uwsgi", uwsgi, Path(uwsgi.env["APP_SOCKET"])),
        ("gunicorn", gunicorn, Path(gunicorn.env["APP_SOCKET"])),
        ("gthread", gunicorn, folder / "gthread-gunicorn.sock"),
    ):
        started[f"min_{key}_nginx"] = start_nginx(
            servers, f"min-nginx-{key}", folder / f"min-nginx-{key}", minimal_proxy(stack, key, upstream)
        )
    started["bare_nginx"] = start_nginx(
        servers,
        "bare-nginx",
        folder / "bare-nginx",
        f"""    sendfile on;
    access_log off;
    server {{
        listen 127.0.0.1:{PORTS["bare_nginx"]} ssl;
        {tls(uwsgi)}
        location /static/ {{
            alias {uwsgi.project}/static/;
        }}
    }}""",
    )
    return started


def benchmark(args: argparse.Namespace) -> Results:
    ports = [p for block in BLOCKS.values() for p in range(block + 20, block + 30)] + list(PORTS.values())
    user, venv = prepare("benchmark.py", ["wrk", "nginx", "logrotate", "git", "openssl"], ports, "benchmark")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results = Results(
        args.threads, args.connections, args.duration, args.rounds, os.cpu_count() or 0, os.getloadavg()[0], args.pages
    )
    with ExitStack() as stacks:
        print("baking, bringing the stacks up ...", flush=True)
        baked_uwsgi = bake(user, venv, **ANSWERS, port_block_start=BLOCKS["uwsgi"], app_server="uwsgi")
        results.timings.append(Timing("bake, post-gen init included (uWSGI, systemd)", baked_uwsgi.seconds))
        baked_gunicorn = bake(
            user,
            venv,
            **ANSWERS,
            port_block_start=BLOCKS["gunicorn"],
            app_server="gunicorn",
            process_manager="supervisor",
        )
        results.timings.append(Timing("bake, post-gen init included (gunicorn, supervisor)", baked_gunicorn.seconds))
        for baked in (baked_uwsgi, baked_gunicorn):  # removed even if `up` never ran
            stacks.callback(shutil.rmtree, baked.project.parent, True)
        uwsgi = bring_up("uWSGI", baked_uwsgi, results.timings, stacks)
        gunicorn = bring_up("gunicorn", baked_gunicorn, results.timings, stacks)
        for stack in (uwsgi, gunicorn):
            add_visits(stack)
        checkouts = {name: git_checkout(stack) for name, stack in (("uWSGI", uwsgi), ("gunicorn", gunicorn))}
        results.timings.append(Timing("init in a fresh clone (stage)", time_init(uwsgi, checkouts["uWSGI"][0], venv)))

        folder = uwsgi.project.parent / "bench"
        folder.mkdir()
        shutil.chown(folder, user, user)
        scripts = out / "wrk"
        scripts.mkdir(exist_ok=True)
        (scripts / "summary.lua").write_text(SUMMARY_LUA)
        (scripts / "count.lua").write_text(COUNT_LUA)  # the tests' own count
        load = Load(args.threads, args.connections, args.duration, scripts)

        servers = Servers(user, folder)
        stacks.callback(servers.stop_all)
        started = start_others(servers, uwsgi, gunicorn, folder)
        results.targets = targets_for(uwsgi, gunicorn, {name: proc for name, (proc, _) in started.items()})
        wanted = set(args.pages) | (set() if args.quick else {"static", "home"})
        results.targets = [target for target in results.targets if target.page in wanted]
        for target in results.targets:
            key = target.key.split(":")[0]
            proc, log = started.get(key) or started.get(f"{key}_nginx") or (None, None)
            wait_answers(target, proc, log)
            load.measure(target, 2)  # warm-up: workers loaded, caches filled
        time.sleep(2)  # every worker idle again
        for target in results.targets:
            target.idle_mib = memory_of(target) if target.processes else None

        # Page by page, so that the targets compared with each other are measured within a
        # minute or two of each other (this machine's speed drifts over longer spans); rounds
        # interleave them, every other round in reverse order.
        pages: dict[str, list[Target]] = {}
        for target in results.targets:
            pages.setdefault(target.page, []).append(target)
        for page, group in pages.items():
            for round_ in range(args.rounds):
                order = group if round_ % 2 == 0 else list(reversed(group))
                print(f"{page}, round {round_ + 1}/{args.rounds} (load {os.getloadavg()[0]:.2f})", flush=True)
                for target in order:
                    run = load.measure(target)
                    target.runs.append(run)
                    print(
                        f"  {target.label:<52} {run.rps:7.0f} req/s  p99 {run.p99_ms:7.1f} ms  failed {run.failed}",
                        flush=True,
                    )
        servers.stop_all()  # the other configurations are idle from here on: no noise

        for name, stack in (("uWSGI", uwsgi), ("gunicorn", gunicorn)):
            page = "health" if "health" in args.pages else args.pages[0]  # the actions' load: the lightest page
            target = results.target(f"gen_{'uwsgi' if name == 'uWSGI' else 'gunicorn'}:{page}")
            work = checkouts[name][1]
            for action, run_action in actions(stack, work)[: 1 if args.quick else None]:
                twice = action in RELOADS_NGINX
                for reconnect in (False, True) if twice else (False,):
                    clients = ", a connection per request" if reconnect else ", kept-alive clients"
                    label = action + (clients if twice else "")
                    print(f"{name}: {label} under load ...", flush=True)
                    note, ok = "", True
                    with load.during(target, reconnect) as seen:
                        started_at = time.monotonic()
                        try:
                            note = run_action()
                        except (RuntimeError, AssertionError) as error:  # the command, and what it said last
                            said = [line for line in str(error).splitlines() if line.strip()] or ["failed"]
                            note, ok = " / ".join(dict.fromkeys([said[0], said[-1]]))[:400], False
                        seconds = time.monotonic() - started_at
                    if twice and not reconnect:  # shown, not the target (see RELOADS_NGINX)
                        note = f"{sum(seen.socket_errors.values())} reset in the reload's instant; {note}"
                    row = UnderLoad(name, label, seen.requests, seen.failed, seconds, ok, note, reconnect or not twice)
                    results.under_load.append(row)
            if not (stack.project / "deploytool/deploy.py").exists():
                results.missing.append(f"deploytool deploy ({name}): not in the generated project yet")
    results.load_after = os.getloadavg()[0]
    return results


# ---- reporting -------------------------------------------------------------------------------
@dataclass
class Goal:
    what: str
    measured: str
    target: str
    held: bool


def goals(results: Results) -> list[Goal]:
    """The targets: each a ratio of two configurations measured side by side in this run."""
    t = results.target
    keys = {target.key for target in results.targets}
    found = []
    seed_of = {"uwsgi": "seed_uwsgi", "gunicorn": "seed_gunicorn"}  # the seeds' configs of each app server
    for page in PAGES:
        for server, seed_key in seed_of.items():
            if f"gen_{server}:{page}" not in keys:
                continue  # not measured (--quick)
            gen, seed, bare = t(f"gen_{server}:{page}"), t(f"{seed_key}:{page}"), t(f"bare_{server}:{page}")
            cpu = gen.total_us / seed.total_us
            found.append(Goal(f"CPU per request, {gen.label} / seed's", f"{cpu:.2f}x", "<= 0.95x", cpu <= 0.95))
            found.append(
                Goal(
                    f"p99, {gen.label} vs seed's",
                    f"{gen.p99_ms:.1f} vs {seed.p99_ms:.1f} ms",
                    "<= seed's",
                    gen.p99_ms <= seed.p99_ms,
                )
            )
            minimal, nginx = t(f"min_{server}:{page}").cpu_us("nginx"), gen.cpu_us("nginx")
            if minimal and nginx is not None:
                found.append(
                    Goal(
                        f"nginx CPU per request, {gen.label} / minimal proxy's",
                        f"{nginx / minimal:.2f}x",
                        "<= 1.10x",
                        nginx / minimal <= 1.10,
                    )
                )
            app, bare_app = gen.cpu_us("app"), bare.cpu_us("app")
            if app is not None and bare_app:
                found.append(
                    Goal(
                        f"app server CPU per request, {gen.label} / bare",
                        f"{app / bare_app:.2f}x",
                        "<= 1.05x",
                        app / bare_app <= 1.05,
                    )
                )
    for server, seed_key in seed_of.items():
        page = next((page for page in PAGES if f"gen_{server}:{page}" in keys), None)
        if page is None:
            continue
        gen, seed = t(f"gen_{server}:{page}"), t(f"{seed_key}:{page}")
        for when, mine, theirs in (
            ("idle", gen.idle_mib or 0.0, seed.idle_mib or 0.0),
            (f"under load ({page})", gen.memory_mib, seed.memory_mib),
        ):
            found.append(
                Goal(
                    f"memory {when}, generated {server} stack vs seed's (PSS)",
                    f"{mine:.0f} vs {theirs:.0f} MiB",
                    "<= seed's",
                    mine <= theirs,
                )
            )
    if "gen_nginx:static" in keys:
        gen, bare = t("gen_nginx:static"), t("bare_nginx:static")
        measured = ratio(gen, bare)
        what = f"{gen.label} / {bare.label.split(' | ')[0]}"
        found.append(Goal(what, f"{measured:.2f}x", ">= 1.00x", measured >= 1.0))
    for target in results.targets:
        if target.failed:
            found.append(Goal(f"failed requests: {target.label}", str(target.failed), "0", False))
    for seen in (u for u in results.under_load if u.target):
        found.append(
            Goal(
                f"failed requests during {seen.action} ({seen.stack})",
                f"{seen.failed} of {seen.requests}" + ("" if seen.ok else f" (action failed: {seen.note})"),
                "0",
                seen.failed == 0 and seen.ok,
            )
        )
    for missing in results.missing:
        found.append(Goal(missing, "missing", "measured", False))
    worst = max(timing.seconds for timing in results.timings if timing.what.startswith("bake"))
    found.append(
        Goal("bake + init (the slower bake, its post-gen init included)", f"{worst:.2f} s", "< 1 s", worst < 1)
    )
    for timing in results.timings:
        if timing.what.startswith("up to the first HTTPS 200"):
            found.append(Goal(timing.what, f"{timing.seconds:.1f} s", "< 3 s", timing.seconds < 3.0))
    return found


def report(results: Results) -> str:
    rows = []
    for target in results.targets:
        rates = [run.rps for run in target.runs]
        rows.append(
            [
                target.label,
                target.kind,
                f"{target.rps:.0f}",
                f"{min(rates):.0f}-{max(rates):.0f}",
                f"{target.p99_ms:.1f}",
                *(f"{us:.0f}" if (us := target.cpu_us(which)) is not None else "-" for which in ("nginx", "app")),
                f"{target.total_us:.0f}",
                f"{target.idle_mib:.0f}" if target.idle_mib is not None else "-",
                f"{target.memory_mib:.0f}" if target.processes else "-",
                str(target.failed),
            ]
        )
    parts = [
        f"wrk -t{results.threads} -c{results.connections} -d{results.duration}s, {results.rounds} rounds "
        f"(median shown), {results.cores} cores, load average {results.load_before:.2f} before, "
        f"{results.load_after:.2f} after; pages: "
        + ", ".join(f"{page} = {PAGES[page][0]}" for page in results.pages)
        + f", static = the hashed stylesheet, home = {HOME} (writes a row)",
        "",
        table(
            [
                "target",
                "kind",
                "req/s",
                "range",
                "p99 ms",
                "nginx CPU us/req",
                "app CPU us/req",
                "total",
                "MiB idle",
                "MiB load",
                "failed",
            ],
            rows,
            right=[2, 3, 4, 5, 6, 7, 8, 9, 10],
        ),
        "",
        table(
            ["under load (generated stacks)", "app server", "requests", "failed", "action s", "note"],
            [[u.action, u.stack, u.requests, u.failed, f"{u.seconds:.1f}", u.note] for u in results.under_load],
            right=[2, 3, 4],
        ),
        "",
        table(["time", "seconds"], [[t.what, f"{t.seconds:.2f}"] for t in results.timings], right=[1]),
        "",
        table(
            ["target", "measured", "goal", "held"],
            [[g.what, g.measured, g.target, "yes" if g.held else "MISSED"] for g in goals(results)],
        ),
    ]
    return "\n".join(parts)


def chart(results: Results, path: Path) -> None:
    """Per page (each with its own scale): requests/s, p99 latency, and the CPU time nginx and
    the app server spent per request."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        "generated": "#2b6cb0",
        "seed": "#c05621",
        "ceiling": "#718096",
        "paired": "#6b46c1",
        "dev server": "#b7791f",
    }
    groups: dict[str, list[Target]] = {}
    for target in results.targets:
        groups.setdefault(target.key.split(":")[1], []).append(target)
    figure, axes = plt.subplots(
        len(groups),
        3,
        figsize=(17, 0.42 * len(results.targets) + 0.9 * len(groups) + 1.2),
        gridspec_kw={"height_ratios": [len(targets) for targets in groups.values()]},
        squeeze=False,
    )
    for (page, group), (left, right, cpu) in zip(groups.items(), axes, strict=True):
        targets = list(reversed(group))
        labels = [target.label.split(" | ")[0] for target in targets]
        bar_colors = [colors[target.kind] for target in targets]
        spread = [
            [target.rps - min(run.rps for run in target.runs) for target in targets],
            [max(run.rps for run in target.runs) - target.rps for target in targets],
        ]
        left.barh(labels, [target.rps for target in targets], color=bar_colors, xerr=spread, capsize=3)
        right.barh(labels, [target.p99_ms for target in targets], color=bar_colors)
        right.set_yticks([])
        nginx = [target.cpu_us("nginx") or 0.0 for target in targets]
        app = [target.cpu_us("app") or 0.0 for target in targets]
        cpu.barh(labels, nginx, color=bar_colors, alpha=0.55)
        cpu.barh(labels, app, left=nginx, color=bar_colors)
        cpu.set_yticks([])
        cpu.set_title("CPU per request, us: nginx (light) + app server", fontsize=10, loc="left")
        path_of = PAGES[page][0] if page in PAGES else {"static": "hashed stylesheet", "home": HOME}.get(page, "")
        left.set_title(f"{page} ({path_of}): requests/s (median, range)", fontsize=10, loc="left")
        right.set_title("p99 latency, ms (median of rounds)", fontsize=10, loc="left")
        for axis in (left, right, cpu):
            axis.grid(axis="x", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=color) for color in colors.values()]
    figure.legend(handles, list(colors), loc="lower center", ncol=len(colors), fontsize=9)
    figure.suptitle(
        f"dj-layout on {results.cores} cores, loopback: wrk -t{results.threads} -c{results.connections} "
        f"-d{results.duration}s, {results.rounds} rounds"
    )
    figure.tight_layout(rect=(0, 0.03, 1, 0.98))  # room for the title above, the legend below
    figure.savefig(path, dpi=100)
    plt.close(figure)


def ensure_matplotlib() -> None:
    """The chart's one dependency, the `bench` extra of pyproject.toml, installed into this
    venv when missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if sys.prefix == sys.base_prefix:
            sys.exit("matplotlib is missing: run this with the tests' venv (.venv/bin/python), which it installs into")
        import tomllib

        with open(TEMPLATE / "pyproject.toml", "rb") as handle:
            extra = tomllib.load(handle)["project"]["optional-dependencies"]["bench"]
        print(f"installing {' '.join(extra)} into {sys.prefix}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *extra], check=True
        )


def bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not within {low}-{high}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=bounded(1, 60), default=6, help="seconds per measurement (default 6)")
    parser.add_argument("--connections", type=bounded(1, 256), default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=bounded(1, 8), default=2, help="wrk threads (default 2)")
    parser.add_argument("--rounds", type=bounded(1, 10), default=5, help="rounds over each page's targets (default 5)")
    parser.add_argument("--out", type=Path, default=TEMPLATE / ".cache/bench", help="folder for the chart and JSON")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a developer's check in under 3 minutes: the visits page only, 2 rounds of 3 s, the reload only",
    )
    args = parser.parse_args(argv)
    args.pages = QUICK_PAGES if args.quick else tuple(PAGES)
    if args.quick:
        args.rounds, args.duration = min(args.rounds, 2), min(args.duration, 3)
    args.out = args.out.resolve()
    ensure_matplotlib()
    results = benchmark(args)
    text = report(results)
    print("\n" + text)
    (args.out / "benchmark.txt").write_text(text + "\n")
    (args.out / "benchmark.json").write_text(json.dumps(asdict(results), indent=2, default=str) + "\n")
    chart(results, args.out / "benchmark.png")
    print(f"\nwrote {args.out / 'benchmark.png'}, benchmark.txt and benchmark.json there")
    return 0 if all(goal.held for goal in goals(results)) else 1


if __name__ == "__main__":
    sys.exit(main())
