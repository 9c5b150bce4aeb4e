"""Ask the site over HTTPS the way a browser would: by name (SNI, Host), trusting a CA."""

from __future__ import annotations

import http.client
import socket
import ssl
from pathlib import Path


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
) -> tuple[int, dict[str, str], bytes]:
    """GET https://name:port/path from address; the certificate must be valid for name."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    conn = _NamedHTTPSConnection(address, port, name, context, timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()
