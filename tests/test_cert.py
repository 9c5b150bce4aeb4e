"""Certificates for real: `deploytool cert` against pebble (Let's Encrypt's test CA) on
loopback, through the install's own nginx, acme snippet and certbot cli.ini; a forced
renewal through the deploy hook while a client keeps asking; the TLS the site serves,
judged by sslyze against Mozilla's intermediate profile; and failures that must leave
the previous site serving."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import BLOCKS, GIT, Stack, bake_for_user, port_free, program, running_stack, wait_until
from support.pebble import Pebble, make_tls_ca, running_pebble

BLOCK = BLOCKS["cert"]
# pebble's fixed ports, inside the block's spare tens (63040-63049): ACME directory,
# management (roots), challtestsrv's fake DNS and its management. The failing pebble
# has its own, so both can exist at once.
PEBBLE_PORTS = {"acme": 63040, "management": 63041, "dns": 63042, "challtestsrv": 63043}
FAILING_PEBBLE_PORTS = {"acme": 63045, "management": 63046, "dns": 63047, "challtestsrv": 63048}
CLOSED_PORT = 63049  # nothing listens here: the failing pebble fetches challenges from it
CLIENTS = 4  # threads asking the site while it renews
HOOK_ERROR = "ran with error output"  # certbot's words when a hook printed to stderr


# ---- pebble ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_ca() -> Iterator[Path]:
    """What pebble serves its HTTPS with; readable by the project user (certbot --ca-bundle)."""
    folder = make_tls_ca()
    yield folder
    shutil.rmtree(folder)


# ---- the site's certificate, as a client sees it ---------------------------------------------


def tls_session(stack: Stack, name: str, cafile: Path, alpn: list[str] | None = None) -> ssl.SSLSocket:
    """A TLS connection to the site's HTTPS port for a name, trusting only cafile."""
    context = ssl.create_default_context(cafile=str(cafile))
    if alpn:
        context.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", stack.https), timeout=10)
    return context.wrap_socket(raw, server_hostname=name)


def get(stack: Stack, cafile: Path, path: str = "/health/") -> tuple[int, str, dict[str, str]]:
    """GET over HTTPS by the site's name, trusting only cafile: status, serial, headers."""
    tls = tls_session(stack, stack.site, cafile)
    serial = str(tls.getpeercert()["serialNumber"])  # type: ignore[index]
    conn = http.client.HTTPSConnection(stack.site, stack.https, timeout=10)
    conn.sock = tls
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, serial, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def pem_to_der(path: Path) -> bytes:
    text = path.read_text()
    end = "-----END CERTIFICATE-----"
    return ssl.PEM_cert_to_DER_cert(text[: text.index(end) + len(end)] + "\n")


def served_der(stack: Stack, name: str) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", stack.https), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der
    return der


def hook(stack: Stack) -> Path:
    return stack.sandbox / f"etc/letsencrypt/renewal-hooks/deploy/{stack.site}.sh"


def enabled_sites(stack: Stack) -> list[str]:
    return sorted(path.name for path in (stack.sandbox / "etc/nginx/sites-enabled").iterdir())


# ---- issuance on a pro install (domain + www) ------------------------------------------------


@dataclass
class Issued:
    stack: Stack
    pebble: Pebble
    proc: subprocess.CompletedProcess[str]
    seconds: float


@pytest.fixture(scope="module")
def issued(project_user: str, project_venv: Path, tls_ca: Path) -> Iterator[Issued]:
    """A pro install brought up with its self-signed certificate, then `deploytool cert`
    against pebble, as the project user."""
    program("certbot", "certbot")
    with running_stack(project_user, project_venv, port_block_start=BLOCK, install_type="pro") as stack:
        with running_pebble(tls_ca, PEBBLE_PORTS, stack.http, CLOSED_PORT) as pebble:
            started = time.monotonic()
            proc = stack.deploytool(
                "cert", "--server", pebble.directory, "--ca-bundle", str(pebble.ca_bundle), check=False
            )
            seconds = time.monotonic() - started
            print(f"\ndeploytool cert took {seconds:.1f} s:\n{proc.stdout}{proc.stderr}")
            yield Issued(stack, pebble, proc, seconds)


def test_cert_issues_over_http01_and_nginx_serves_it(issued: Issued) -> None:
    stack, proc = issued.stack, issued.proc
    assert proc.returncode == 0, proc.stderr
    # a line per step as it goes, then what comes next
    assert [line[:4] for line in proc.stdout.splitlines()] == ["1/3 ", "2/3 ", "3/3 ", "next"], proc.stdout
    live = stack.sandbox / f"etc/letsencrypt/live/{stack.site}"
    # certbot's own lineage: links into archive/, renewal config beside it
    assert (live / "fullchain.pem").is_symlink() and (live / "privkey.pem").is_symlink()
    assert (stack.sandbox / f"etc/letsencrypt/renewal/{stack.site}.conf").is_file()
    assert enabled_sites(stack) == [f"{stack.site}.nginx.conf"]
    site_conf = (stack.sandbox / f"etc/nginx/sites-available/{stack.site}.nginx.conf").read_text()
    assert f'ssl_certificate "{live}/fullchain.pem";' in site_conf
    # the sandbox's self-signed certificate (served by `up` until now) stays aside, unused
    self_signed = stack.sandbox / f"etc/ssl/sandbox/{stack.site}/fullchain.pem"
    assert self_signed.is_file() and "etc/ssl/sandbox" not in site_conf
    # nginx presents exactly certbot's certificate, for both names ...
    for name in (stack.site, f"www.{stack.site}"):
        assert served_der(stack, name) == pem_to_der(live / "cert.pem")
        # ... and it verifies against this pebble run's root, for that name (SNI + SAN)
        with tls_session(stack, name, issued.pebble.root) as tls:
            sans = {value for kind, value in tls.getpeercert()["subjectAltName"] if kind == "DNS"}  # type: ignore[union-attr]
        assert sans == {stack.site, f"www.{stack.site}"}
    status, _, _ = get(stack, issued.pebble.root, "/")
    assert status == 200


def test_cert_again_keeps_the_certificate_and_https_up(issued: Issued) -> None:
    stack = issued.stack
    serial = get(stack, issued.pebble.root)[1]
    again = stack.deploytool("cert", "--server", issued.pebble.directory, "--ca-bundle", str(issued.pebble.ca_bundle))
    assert "bootstrap site not needed" in again.stdout and "not due for renewal" in again.stdout, again.stdout
    assert get(stack, issued.pebble.root)[:2] == (200, serial)
    assert enabled_sites(stack) == [f"{stack.site}.nginx.conf"]


def test_served_tls_meets_mozilla_intermediate(issued: Issued) -> None:
    """sslyze's Mozilla checker: versions, ciphers, curves, certificate (trusted through
    pebble's root, 90 days, ECDSA), known vulnerabilities. Zero deviations."""
    stack = issued.stack
    target = f"{stack.site}:{stack.https}{{127.0.0.1}}"
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "sslyze.json"
        argv = [sys.executable, "-m", "sslyze", "--mozilla_config=intermediate"]
        argv += ["--certinfo_ca_file", str(issued.pebble.root), "--json_out", str(report), target]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        print(proc.stdout[proc.stdout.find("COMPLIANCE") :])
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert f"{stack.site}:{stack.https}: OK - Compliant." in proc.stdout, proc.stdout[-2000:]
        scan = json.loads(report.read_text())["server_scan_results"][0]["scan_result"]
    accepted = {
        version: [
            suite["cipher_suite"]["name"]
            for suite in scan[f"{version}_cipher_suites"]["result"]["accepted_cipher_suites"]
        ]
        for version in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1", "tls_1_2", "tls_1_3")
    }
    assert {version for version, suites in accepted.items() if suites} == {"tls_1_2", "tls_1_3"}, accepted
    # HTTP/2 offered through ALPN, and HSTS on every answer of a pro install: for its own
    # name only, as the answers default to (hsts_subdomains)
    with tls_session(stack, stack.site, issued.pebble.root, alpn=["h2", "http/1.1"]) as tls:
        assert tls.selected_alpn_protocol() == "h2"
    headers = get(stack, issued.pebble.root, "/")[2]
    assert headers["strict-transport-security"] == "max-age=63072000"


def test_forced_renewal_reloads_nginx_without_a_failed_request(issued: Issued) -> None:
    stack, pebble = issued.stack, issued.pebble
    old_serial = get(stack, pebble.root)[1]
    results: list[tuple[float, int, str] | tuple[float, str]] = []
    stop = threading.Event()

    def client() -> None:
        deadline = time.monotonic() + 90
        while not stop.is_set() and time.monotonic() < deadline and len(results) < 5000:
            try:
                status, serial, _ = get(stack, pebble.root)
                results.append((time.monotonic(), status, serial))
            except (OSError, http.client.HTTPException) as error:
                results.append((time.monotonic(), repr(error)))

    # A few clients at once, each request on a new connection (a new TLS handshake): some
    # of them land in the moment nginx swaps its workers.
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(results) >= 20, "the clients' first requests")
        cli_ini = stack.sandbox / f"etc/letsencrypt/{stack.site}.ini"
        started = time.monotonic()
        # As certbot's timer runs it (`certbot -q renew`), with the sandbox's cli.ini, the
        # private CA's trust, --force-renewal, and without -q: the hook's stderr would show.
        certbot = program("certbot", "certbot")
        renew = stack.as_user(
            "env", f"REQUESTS_CA_BUNDLE={pebble.ca_bundle}", certbot, "renew", "--force-renewal", "--config", cli_ini
        )
        renewed = time.monotonic()
        wait_until(lambda: get(stack, pebble.root)[1] != old_serial, "nginx serving the renewed certificate", 10)
        wait_until(lambda: sum(1 for r in results if len(r) == 3 and r[2] != old_serial) >= 20, "requests after", 30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(100)
    output = renew.stdout + renew.stderr
    log = (stack.sandbox / "var/log/letsencrypt/letsencrypt.log").read_text()
    assert f"Running deploy-hook command: {hook(stack)}" in log, output  # certbot ran our hook ...
    assert HOOK_ERROR not in output, output  # ... and it said nothing on stderr
    live = stack.sandbox / f"etc/letsencrypt/live/{stack.site}"
    assert served_der(stack, stack.site) == pem_to_der(live / "cert.pem")
    failed = [r for r in results if len(r) == 2 or r[1] != 200]
    serials = [r[2] for r in results if len(r) == 3]
    during = [r for r in results if started <= r[0] <= renewed]
    print(
        f"\nrenewal: certbot renew {renewed - started:.1f} s; {len(results)} requests, {len(during)} during "
        f"certbot renew, {serials.count(old_serial)} with the old certificate, "
        f"{len(serials) - serials.count(old_serial)} with the new one, {len(failed)} failed"
    )
    assert not failed, failed[:5]
    assert serials[0] == old_serial and serials[-1] != old_serial


# ---- failures leave the previous site serving (a stage install: only its own name) ------------


def test_deploys_under_a_private_ca_go_live_or_roll_back_truthfully(issued: Issued) -> None:
    """With a certificate from a CA outside the public trust store (pebble here, Let's
    Encrypt's staging in a rehearsal), a good revision goes live (exit 0) and a bad one is
    rolled back and reported so (exit 1): the health check never mistakes the CA for a failure."""
    stack = issued.stack
    git = [*GIT, "-C", str(stack.project)]
    stack.as_user(*git, "init", "-q", "-b", "main")
    stack.as_user(*git, "add", "-A")
    stack.as_user(*git, "commit", "-q", "-m", "As generated")
    # The developer's clone, where new revisions are made; the install fetches from it.
    dev = stack.project.parent / "dev"
    stack.as_user(*GIT, "clone", "-q", str(stack.project), str(dev))
    stack.as_user(*git, "remote", "add", "origin", str(dev))
    work = [*GIT, "-C", str(dev)]

    def deploy(change: str, message: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        """A revision that makes ``change`` (a shell line in the developer's clone), deployed."""
        stack.as_user("sh", "-c", f"cd {dev} && {change}")
        stack.as_user(*work, "commit", "-q", "-am", message)
        revision = stack.as_user(*work, "rev-parse", "HEAD").stdout.strip()
        started = time.monotonic()
        done = stack.deploytool("deploy", revision, "--health-timeout", "20", check=False)
        print(f"\n{message}: deploy {time.monotonic() - started:.1f} s\n{done.stdout}{done.stderr}")
        return revision, done

    good, live = deploy("echo 'A new revision.' >> README.md", "A good revision")
    assert live.returncode == 0, live.stdout + live.stderr
    assert f"{good[:12]} is live" in live.stdout
    assert "answers 200 over HTTPS" in live.stdout  # the site, through nginx, with pebble's certificate
    # A bad one: an app that does not exist, which `manage.py check` finds after the checkout.
    custom = f"{stack.answers['project_slug']}/custom_settings.py"
    _, failed = deploy(f"echo 'EXTRA_APPS = [\"no_such_app\"]' >> {custom}", "A bad revision")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Rolled back" in failed.stderr and "failed too" not in failed.stderr
    assert f"{good[:12]} serves, as before" in failed.stderr
    assert get(stack, issued.pebble.root)[0] == 200


def test_up_after_down_keeps_the_issued_certificate(issued: Issued) -> None:
    stack = issued.stack
    live = stack.sandbox / f"etc/letsencrypt/live/{stack.site}"
    stack.deploytool("down")
    up = stack.deploytool("up")
    assert "serving the certificate certbot issued" in up.stdout, up.stdout
    assert served_der(stack, stack.site) == pem_to_der(live / "cert.pem")  # not the self-signed one
    assert get(stack, issued.pebble.root)[0] == 200


@pytest.fixture(scope="module")
def stage(project_user: str, project_venv: Path) -> Iterator[Stack]:
    with running_stack(project_user, project_venv, port_block_start=BLOCK, install_type="stage") as stack:
        yield stack


def still_serving(stack: Stack) -> None:
    """What a user checks after a failed `cert`: the site answers over HTTPS with the
    certificate it had, and port 80 still answers ACME challenges."""
    status, _, body = stack.https_get("/")  # trusts only the sandbox CA: the self-signed one
    assert status == 200 and b"Visits" in body
    assert enabled_sites(stack) == [f"{stack.site}.nginx.conf"]
    webroot = stack.sandbox / "var/www/letsencrypt/.well-known/acme-challenge"
    (webroot / "after-failure").write_text("still here")
    assert stack.http_request("GET", "/.well-known/acme-challenge/after-failure")[::2] == (200, b"still here")
    assert not (stack.sandbox / f"etc/letsencrypt/live/{stack.site}").exists()


def test_unreachable_challenge_fails_cleanly_and_keeps_the_site(stage: Stack, tls_ca: Path) -> None:
    """The CA cannot reach port 80 (a firewall, wrong DNS): here pebble fetches from a port
    nothing listens on."""
    assert port_free(CLOSED_PORT)
    with running_pebble(tls_ca, FAILING_PEBBLE_PORTS, CLOSED_PORT, CLOSED_PORT) as pebble:
        proc = stage.deploytool("cert", "--server", pebble.directory, "--ca-bundle", str(pebble.ca_bundle), check=False)
    print(f"\n{proc.stdout}{proc.stderr}")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"deploytool cert: certbot could not get a certificate for {stage.site}: ")
    assert "could not fetch the challenge" in lines[0] and str(CLOSED_PORT) in lines[0]
    assert "nginx serves its previous config again" in lines[0]
    still_serving(stage)


def test_site_without_the_acme_snippet_fails_before_asking_the_ca(stage: Stack) -> None:
    """A bootstrap site that lost its `include .../acme.conf` never reaches certbot: the
    probe token is not served, the CA is not asked (no rate limit spent)."""
    template = stage.project / "etc/templates/nginx/_port80.conf.j2"  # port 80 of both sites
    original = template.read_text()
    assert "snippets/acme.conf" in original
    template.write_text("\n".join(line for line in original.splitlines() if "acme.conf" not in line) + "\n")
    try:
        # No ACME server is running: a request to it would fail differently.
        proc = stage.deploytool("cert", "--server", f"https://127.0.0.1:{CLOSED_PORT}/dir", check=False)
    finally:
        template.write_text(original)
    print(f"\n{proc.stdout}{proc.stderr}")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "nginx does not serve the ACME challenge folder" in lines[0] and "HTTP 404" in lines[0]
    assert "nginx serves its previous config again" in lines[0]
    still_serving(stage)
    # the bootstrap site nginx had is back too, include and all
    installed = stage.sandbox / f"etc/nginx/sites-available/{stage.site}_letsencrypt.nginx.conf"
    assert "snippets/acme.conf" in installed.read_text()


def test_bad_arguments_are_refused_before_anything_changes(stage: Stack) -> None:
    for args, words in (
        (["--server", "http://acme.example/dir"], "--server 'http://acme.example/dir' is not the https:// URL"),
        (["--ca-bundle", "/nonexistent.pem"], "--ca-bundle /nonexistent.pem: cannot read it"),
        (["--email", "not-an-address"], "--email 'not-an-address' is not an e-mail address"),
    ):
        proc = stage.deploytool("cert", *args, check=False)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) == 1
    still_serving(stage)


# ---- a server's certbot settings --------------------------------------------------------------


def test_server_certbot_settings_are_the_sites_own_and_parse(
    project_user: str, project_venv: Path, tmp_path: Path
) -> None:
    """A server install's certbot settings go in a file of the site's own, never the host's
    cli.ini (which every certificate of the host reads), and parse in certbot."""
    project = bake_for_user(project_user, project_venv, port_block_start=BLOCK, install_type="pro")
    try:
        site = json.loads((project / "etc/project.json").read_text())["domain"]
        assert not (project / "etc/letsencrypt/cli.ini").exists()
        cli_ini = project / f"etc/letsencrypt/{site}.ini"
        text = cli_ini.read_text()
        assert "config-dir" not in text and "webroot-path = /var/www/letsencrypt" in text
        folders = {name: tmp_path / name for name in ("config", "work", "logs", "webroot")}
        for folder in folders.values():
            folder.mkdir()
        proc = subprocess.run(
            [program("certbot", "certbot"), "--config", str(cli_ini), "certificates"]
            + ["--config-dir", str(folders["config"]), "--work-dir", str(folders["work"])]
            + ["--logs-dir", str(folders["logs"]), "--webroot-path", str(folders["webroot"])],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0 and "No certificates found" in proc.stdout, proc.stdout + proc.stderr
    finally:
        shutil.rmtree(project.parent)
