"""pebble, Let's Encrypt's test CA, with its fake DNS, on loopback: certbot gets real
certificates from it over HTTP-01, as from Let's Encrypt."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .run import port_free, program, run, wait_until

# Let's Encrypt's lifetime; pebble's default (5 years) is beyond Mozilla's 366-day maximum.
VALIDITY = 90 * 24 * 3600


def make_tls_ca() -> Path:
    """A CA and a certificate for 127.0.0.1 that pebble serves its HTTPS with (Debian's
    pebble ships no test certificates). Readable by the project user: certbot trusts the
    CA through --ca-bundle."""
    folder = Path(tempfile.mkdtemp(prefix="dj-layout-pebble-ca-"))
    folder.chmod(0o755)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(
        ["openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=dj-layout test ACME CA"]
        + ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]
        + ["-keyout", folder / "ca.key", "-out", folder / "ca.pem"]
    )
    run(
        ["openssl", "req", "-new", *ec, "-subj", "/CN=127.0.0.1", "-keyout", folder / "key.pem"]
        + ["-out", folder / "csr"]
    )
    (folder / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run(
        ["openssl", "x509", "-req", "-in", folder / "csr", "-CA", folder / "ca.pem", "-CAkey", folder / "ca.key"]
        + ["-CAcreateserial", "-days", "2", "-extfile", folder / "ext", "-out", folder / "cert.pem"]
    )
    (folder / "ca.pem").chmod(0o644)
    return folder


@dataclass
class Pebble:
    directory: str  # the ACME directory URL: deploytool cert --server
    ca_bundle: Path  # what signed pebble's HTTPS: deploytool cert --ca-bundle
    root: Path  # pebble's root CA of this run: what issued certificates chain to
    log: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


def https_fetch(url_port: int, path: str, cafile: Path) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection("127.0.0.1", url_port, context=context, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextmanager
def running_pebble(tls_ca: Path, ports: dict[str, int], http_port: int, closed_port: int) -> Iterator[Pebble]:
    """pebble and its fake DNS (every name is 127.0.0.1), validating HTTP-01 on http_port;
    its TLS-ALPN-01 port is ``closed_port``, where nothing listens."""
    pebble = program("pebble", "pebble")
    challtestsrv = program("pebble-challtestsrv", "pebble")
    taken = [port for port in ports.values() if not port_free(port)]
    assert not taken, f"ports {taken} are taken: stop what listens there (pebble's ports in these tests)"
    folder = Path(tempfile.mkdtemp(prefix="dj-layout-pebble-"))
    folder.chmod(0o755)
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{ports['acme']}",
            "managementListenAddress": f"127.0.0.1:{ports['management']}",
            "certificate": str(tls_ca / "cert.pem"),
            "privateKey": str(tls_ca / "key.pem"),
            "httpPort": http_port,
            "tlsPort": closed_port,  # TLS-ALPN-01: never used by certbot's webroot
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            "certificateValidityPeriod": VALIDITY,
        }
    }
    (folder / "pebble.json").write_text(json.dumps(config))
    log = folder / "pebble.log"
    result = Pebble(f"https://127.0.0.1:{ports['acme']}/dir", tls_ca / "ca.pem", folder / "root.pem", log)
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    with log.open("wb") as out:
        try:
            dns = ["-dns01", f"127.0.0.1:{ports['dns']}", "-management", f"127.0.0.1:{ports['challtestsrv']}"]
            off = ["-http01", "", "-https01", "", "-tlsalpn01", ""]  # its own challenge servers: unused
            result.processes.append(
                subprocess.Popen(
                    [challtestsrv, *dns, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", *off],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
            wait_until(lambda: not port_free(ports["challtestsrv"]), "pebble-challtestsrv listening")
            argv = [pebble, "-config", folder / "pebble.json", "-dnsserver", f"127.0.0.1:{ports['dns']}"]
            result.processes.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env))
            wait_until(lambda: https_fetch(ports["acme"], "/dir", result.ca_bundle)[0] == 200, "pebble's directory")
            # The root is made anew at every start: fetch this run's.
            status, root = https_fetch(ports["management"], "/roots/0", result.ca_bundle)
            assert status == 200 and b"BEGIN CERTIFICATE" in root, root
            result.root.write_bytes(root)
            result.root.chmod(0o644)
            yield result
        finally:
            for process in reversed(result.processes):
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            shutil.rmtree(folder, ignore_errors=True)
    left = [port for port in ports.values() if not port_free(port)]
    assert not left, f"pebble's ports still taken after it stopped: {left}"
