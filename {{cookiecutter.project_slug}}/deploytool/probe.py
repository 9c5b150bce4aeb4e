"""Ask the site over HTTPS the way a browser would: by name (SNI, Host), trusting a CA."""

from __future__ import annotations

import http.client
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
) -> tuple[int, dict[str, str], bytes]:
    """GET https://name:port/path from address; the certificate must be valid for name
    (unless verify is off: the caller then compares the served certificate itself)."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
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
