"""Ask the install's servers the way their clients do: the site over HTTPS by name (SNI,
Host) with the trust its certificate was issued under, and the app server of this host
directly, past nginx, as nginx passes a request to it."""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
from pathlib import Path

from .certificates import issued, sandbox_ca
from .layout import Install


class _NamedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to an address but speaks TLS and HTTP for a name (as curl --resolve)."""

    def __init__(self, address: str, port: int, name: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(name, port, context=context, timeout=timeout)
        self._address = address
        self._context = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def https_get(
    name: str,
    port: int,
    path: str = "/",
    cafile: Path | None = None,
    address: str = "127.0.0.1",
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
    verify: bool = True,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """GET https://name:port/path from address; the certificate must be valid for name
    (unless verify is off: the caller then compares the served certificate itself), and
    trusted by cafile, or by ``context`` when given."""
    context = context or ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    conn = _NamedHTTPSConnection(address, port, name, context, timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def served_certificate(install: Install, name: str) -> bytes | None:
    """The certificate (DER) nginx presents for a name on this machine, or None. Compared
    byte for byte with a file, so no trust is needed to fetch it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", install.https_port), timeout=2) as raw:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                return tls.getpeercert(binary_form=True)
    except OSError:
        return None


def first_certificate(pem_file: Path) -> bytes | None:
    """The DER of the first certificate in a PEM file (a fullchain's leaf), or None."""
    try:
        text = pem_file.read_text()
    except OSError:
        return None
    end = "-----END CERTIFICATE-----"
    if end not in text:
        return None
    return ssl.PEM_cert_to_DER_cert(text[: text.index(end) + len(end)] + "\n")


def site_get(install: Install, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET https://<site>/path through this host's nginx, trusting what the site's
    certificate was issued under: once certbot has issued one (from any CA: Let's Encrypt,
    its staging, a private ACME CA), nginx must present exactly live/<site>/cert.pem; until
    then a sandbox's own CA, or a server's system trust store."""
    try:
        real = issued(install)
    except PermissionError:  # a server's live/ is root's: its issuer, copied by `cert`, tells
        return _get_with_issuer(install, path, timeout)
    if real:
        expected = first_certificate(install.cert_dir / "cert.pem")
        if served_certificate(install, install.site) != expected:
            raise ssl.SSLError(f"nginx does not present {install.cert_dir / 'cert.pem'} for {install.site}")
    cafile = sandbox_ca(install) if install.sandbox and not real else None
    status, _, body = https_get(install.site, install.https_port, path, cafile, timeout=timeout, verify=not real)
    return status, body


def _get_with_issuer(install: Install, path: str, timeout: float) -> tuple[int, bytes]:
    """As the project user on a server: the served certificate must be valid for the site's
    name and signed by the issuer `cert` recorded (any CA: Let's Encrypt, its staging, a
    private one), or, with none recorded, by a CA of the system's trust store."""
    recorded = install.issuer_file.exists()
    context = ssl.create_default_context(cafile=str(install.issuer_file) if recorded else None)
    if recorded:
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the issuer is an intermediate
    status, _, body = https_get(install.site, install.https_port, path, timeout=timeout, context=context)
    return status, body


def app_get(install: Install, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET path from this host's own app server, past nginx and any balancer: on its unix
    socket (or its private address), with the headers nginx sets (the site's name, HTTPS)."""
    host = install.site + install.https_port_suffix
    if install.app_on_socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        address: str | tuple[str, int] = str(install.app_socket)
    else:
        conn = socket.socket(socket.AF_INET6 if ":" in install.app_bind else socket.AF_INET, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        address = (install.app_bind, install.ports["app"])
    with conn:
        conn.connect(address)
        if install.project.app_server == "uwsgi":
            conn.sendall(uwsgi_request(path, host))
        else:
            request = f"GET {path} HTTP/1.0\r\nHost: {host}\r\nX-Forwarded-Proto: https\r\n\r\n"
            conn.sendall(request.encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        raise http.client.BadStatusLine(head[:80].decode(errors="replace")) from None


def uwsgi_request(path: str, host: str) -> bytes:
    """A GET in the uwsgi protocol: a 4-byte header, then the CGI variables nginx sends."""
    variables = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": host.partition(":")[0],
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.0",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": host,
        "HTTP_X_FORWARDED_PROTO": "https",
    }
    body = b"".join(
        struct.pack("<H", len(key)) + key.encode() + struct.pack("<H", len(value)) + value.encode()
        for key, value in variables.items()
    )
    return struct.pack("<BHB", 0, len(body), 0) + body
