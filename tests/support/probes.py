"""Attacks run as another local account (`nobody`, a second project user): what each
attempt saw, by errno name, so a test asserts the refusal it expects.

The attempts run in a child Python started with runuser, with Debian's own python3 (root's
Python is under /root, which other accounts cannot enter)."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

ATTACKER = "nobody"

_SCRIPT = r"""
import errno, json, os, socket, sys
results = []
for kind, target, payload in json.loads(sys.argv[1]):
    try:
        if kind == "read":
            with open(target, "rb") as handle:
                results.append("ok:" + handle.read(64).hex())
        elif kind == "list":
            results.append("ok:" + ",".join(sorted(os.listdir(target))))
        elif kind == "write":
            with open(target, "ab") as handle:
                handle.write(payload.encode())
            results.append("ok:")
        else:
            family = socket.AF_UNIX if kind == "unix" else socket.AF_INET
            with socket.socket(family) as conn:
                conn.settimeout(5)
                conn.connect(target if kind == "unix" else ("127.0.0.1", int(target)))
                conn.sendall(bytes.fromhex(payload))
                results.append("ok:" + conn.recv(200).hex())
    except OSError as error:
        results.append(errno.errorcode.get(error.errno, str(error)))
print(json.dumps(results))
"""


def attempt(attempts: list[tuple[str, str | Path | int, str]], account: str = ATTACKER) -> list[str]:
    """Run (kind, target, payload) attempts as ``account``: read/list/write a path, or
    connect to a unix socket / loopback TCP port and send payload (hex). Each result is
    'ok:<hex of what came back>' or an errno name such as EACCES or ECONNREFUSED."""
    plain = [(kind, str(target), payload) for kind, target, payload in attempts]
    proc = subprocess.run(
        ["runuser", "-u", account, "--", "/usr/bin/python3", "-c", _SCRIPT, json.dumps(plain)],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    results: list[str] = json.loads(proc.stdout)
    return results


def uwsgi_packet(variables: dict[str, str]) -> bytes:
    """A uwsgi-protocol request: a 4-byte header, then the CGI variables."""
    body = b"".join(
        struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode() for k, v in variables.items()
    )
    return struct.pack("<BHB", 0, len(body), 0) + body


def exec_packet(marker: Path) -> str:
    """The uwsgi packet that makes an unguarded uWSGI run a command as the app's user (hex,
    for attempt())."""
    return uwsgi_packet(
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "SERVER_NAME": "x",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "x",
            "UWSGI_FILE": f"exec://touch {marker}",
            "UWSGI_APPID": "evil",
            "SCRIPT_NAME": "/evil",
        }
    ).hex()


def http_get(path: str, host: str) -> str:
    return f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode().hex()
