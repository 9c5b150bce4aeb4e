"""A baked project whose sandbox stack runs as the project user, and what a user reaches of it."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .bake import bake_for_user, ensure_project_venv, root_copy
from .run import run


class Stack:
    """A baked project whose sandbox stack runs as the project user: what a user reaches."""

    def __init__(self, project: Path, user: str) -> None:
        self.project = project
        self.user = user
        self.answers: dict[str, Any] = json.loads((project / "etc/project.json").read_text())
        self.env = dict(
            line.split("=", 1) for line in (project / "etc/env.conf").read_text().splitlines() if "=" in line
        )
        self.site = self.env["SITE"]
        self.https = int(self.env["PORT_HTTPS"])
        self.http = int(self.env["PORT_HTTP"])
        self.sandbox = project / ".sandbox"
        self.ca = self.sandbox / "etc/ssl/sandbox-ca.pem"

    def as_user(self, *argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", self.user, "--", *map(str, argv)]
        if check:
            return run(command, cwd=self.project)
        return subprocess.run(command, cwd=self.project, capture_output=True, text=True)

    def write(self, path: Path, text: str, append: bool = False) -> None:
        """Write (or append to) a file of the install as the project user, as an editor would."""
        code = f"import sys; open(sys.argv[1], {'a' if append else 'w'!r}).write(sys.argv[2])"
        self.as_user("python3", "-c", code, path, text)

    def deploytool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """bin/deploytool as the project user, as the README says (the venv env3.11 is the shared one)."""
        return self.as_user(self.project / "bin/deploytool", *args, check=check)

    def deploytool_as_root(
        self, *args: str, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """deploytool as root, from root's own copy of the code (``cwd``, made when not given)
        with the root-owned venv: never the user's checkout or its env3.11 link."""
        argv = [ensure_project_venv() / "bin/python", "-m", "deploytool", "--root", self.project, *args]
        where = cwd or root_copy(self.project)
        if check:
            return run(argv, cwd=where)
        return subprocess.run([str(a) for a in argv], cwd=where, capture_output=True, text=True)

    def system_part(
        self, system_root: Path, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The server install's system part into ``system_root`` (standing for /): the user
        points the install there (init --system-root), root installs from its own copy."""
        self.deploytool("init", "--install-type", self.env["INSTALL_TYPE"], "--system-root", str(system_root))
        return self.deploytool_as_root("install", "--root", str(system_root), "--part", "system", check=check, cwd=cwd)

    def https_get(
        self,
        path: str = "/",
        headers: dict[str, str] | None = None,
        host: str | None = None,
        source: str = "127.0.0.1",
    ) -> tuple[int, dict[str, str], bytes]:
        """GET over HTTPS by name, trusting only the sandbox CA (no -k), from the client
        address ``source`` (any of loopback's 127/8)."""
        return self.https_request("GET", path, headers, host=host, source=source)

    def https_request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        host: str | None = None,
        source: str = "127.0.0.1",
    ) -> tuple[int, dict[str, str], bytes]:
        context = ssl.create_default_context(cafile=str(self.ca))
        name = host or self.site
        raw = socket.create_connection(("127.0.0.1", self.https), timeout=10, source_address=(source, 0))
        conn = http.client.HTTPSConnection(name, self.https, context=context, timeout=10)
        conn.sock = context.wrap_socket(raw, server_hostname=self.site)
        return _exchange(conn, method, path, headers, body)

    def http_request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        port: int | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port or self.http, timeout=10)
        return _exchange(conn, method, path, {"Host": self.site, **(headers or {})}, body)

    def listening(self) -> list[int]:
        """Ports of the install's ten that something listens on (read from /proc)."""
        base = int(self.env["BASE_PORT"])
        found = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if fields[3] == "0A" and base <= port < base + 10:
                    found.add(port)
        return sorted(found)


def _exchange(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str] | None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@contextmanager
def running_stack(user: str, venv: Path, **answers: Any) -> Iterator[Stack]:
    project = bake_for_user(user, venv, **answers)
    stack = Stack(project, user)
    try:
        stack.deploytool("up")
        stack = Stack(project, user)  # env.conf now names the sandbox
        yield stack
    finally:
        stack.deploytool("down", check=False)
        left = stack.listening()
        shutil.rmtree(project.parent, ignore_errors=True)
        assert left == [], f"ports still listening after down: {left}"
