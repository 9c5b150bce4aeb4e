"""The install's nginx: the sandbox's own server, which of the site's two configs is
enabled, `nginx -t` before every reload, and waiting until a reload has taken effect.

An install has two nginx sites and enables exactly one (both answer port 80 for the same
names): the final HTTPS site, or the bootstrap site that serves nothing but the ACME
challenge while the first certificate is issued. A sandbox runs its own nginx
(deploytool up); a server has the system's, reloaded through systemd when it runs.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
from pathlib import Path

from . import proc, sockets
from .certificates import has_certificate
from .errors import DeployError
from .layout import Install


class Nginx:
    """The sandbox's own nginx, with the install's main config and error log."""

    name = "nginx"

    def __init__(self, install: Install) -> None:
        self.install = install

    def argv(self, *args: str) -> list[str]:
        main = self.install.nginx_dir / "nginx.conf"
        return [proc.program("nginx"), "-c", str(main), "-e", str(self.install.nginx_error_log), *args]

    def running(self) -> bool:
        return proc.pid_alive(self.install.nginx_pidfile)

    def test(self) -> None:
        _test(self.argv("-t", "-q"))

    def start(self) -> None:
        self.test()
        self.stop_orphans()
        if self.running():
            proc.run(self.argv("-s", "reload"), "nginx -s reload")
            return
        proc.run(self.argv(), "nginx start")
        proc.wait_until(self.running, "nginx writing its pid file")

    def stop(self) -> None:
        if self.running():
            proc.attempt(self.argv("-s", "quit"))
            proc.wait_until(lambda: not self.running(), "nginx stopping")
        self.stop_orphans()

    def orphans(self) -> list[int]:
        """Workers left holding the install's ports by a master that died (kill -9): they
        go on serving the old config, and no signal to a master reaches them."""
        if self.running():
            return []
        return listeners_of(b"nginx: worker", {self.install.https_port, self.install.http_port})

    def stop_orphans(self) -> list[int]:
        """Stop such workers: QUIT lets them finish their requests; KILL after 10 s."""
        found = self.orphans()
        for signal_number in (signal.SIGQUIT, signal.SIGKILL):
            for pid in found:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal_number)
            if proc.poll(lambda: not self.orphans(), 10):
                break
        return found


def listeners_of(title: bytes, ports: set[int]) -> list[int]:
    """This user's processes whose command line starts with ``title`` and that hold a socket
    listening on one of ``ports``."""
    inodes = {listener.inode for listener in sockets.listeners() if listener.port in ports}
    found = []
    for pid in sockets.holders(inodes) if inodes else []:
        try:
            folder = Path(f"/proc/{pid}")
            if folder.stat().st_uid == os.geteuid() and (folder / "cmdline").read_bytes().startswith(title):
                found.append(pid)
        except OSError:
            continue
    return found


def _test(argv: list[str]) -> None:
    tested = proc.attempt(argv)
    if tested.returncode != 0:
        raise DeployError(f"nginx -t failed, nginx keeps its previous config: {tested.stderr.strip()}")


def enabled_sites(install: Install) -> list[str]:
    """Which of the install's two sites are enabled (normally one)."""
    return [name for name in install.sites if install.site_enabled(name).is_symlink()]


def wanted_site(install: Install) -> str:
    """The final HTTPS site once a certificate exists; until then the bootstrap site,
    which serves only the ACME challenge on port 80."""
    return install.final_site if has_certificate(install) else install.bootstrap_site


def enable(install: Install, name: str) -> list[str]:
    """Enable one of the install's two sites and disable the other (never both: they
    answer port 80 for the same names). Takes effect at the next reload. Returns what
    it changed."""
    changes = []
    for other in install.sites:
        if other != name and install.site_enabled(other).is_symlink():
            install.site_enabled(other).unlink()
            changes.append(f"disabled {install.site_enabled(other)}")
    link = install.site_enabled(name)
    target = Path("../sites-available") / name
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return changes
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{name}.new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)
    return [*changes, f"enabled {link}"]


# What one path was: absent (None), a link (its target, b""), or a file (its bytes, mode).
State = tuple[str, bytes] | tuple[bytes, int] | None


class Saved:
    """Files and links as they were, to put back exactly: nginx's previous config."""

    def __init__(self, paths: list[Path]) -> None:
        self.states: dict[Path, State] = {path: _state(path) for path in paths}

    def restore(self) -> None:
        for path, state in self.states.items():
            if _state(path) == state:
                continue
            if path.is_symlink() or path.exists():
                path.unlink()
            if state is None:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            first, second = state
            if isinstance(first, str):  # a link
                path.symlink_to(first)
            else:
                path.write_bytes(first)
                path.chmod(int(second))


def _state(path: Path) -> State:
    if path.is_symlink():
        return (os.readlink(path), b"")
    if path.is_file():
        return (path.read_bytes(), path.stat().st_mode & 0o777)
    return None


# ---- test and reload -------------------------------------------------------------------------
def test(install: Install) -> None:
    """nginx -t on the config nginx would load; raises with nginx's own words."""
    _test(Nginx(install).argv("-t", "-q") if install.sandbox else [proc.program("nginx"), "-t", "-q"])


def running(install: Install) -> bool:
    """Whether nginx runs (the sandbox's own, or the system's: Debian's pid file)."""
    return proc.pid_alive(install.nginx_pidfile)


def reload(install: Install) -> None:
    """Test, then reload, and wait until the new config answers: nginx's master starts new
    workers and tells the old ones to stop taking connections (they finish their requests)."""
    test(install)
    old = workers(install)
    if install.sandbox:
        nginx = Nginx(install)
        if not nginx.running():
            raise DeployError(
                "the sandbox nginx is not running, so nothing can answer the ACME challenge: "
                f"start the stack with `{install.deploytool} up`, then run cert again"
            )
        _reload(nginx.argv("-s", "reload"))
    elif not (
        proc.find("systemctl")
        and Path("/run/systemd/system").is_dir()
        and proc.attempt(["systemctl", "reload", "nginx"]).returncode == 0
    ):
        _reload([proc.program("nginx"), "-s", "reload"])
    if not proc.poll(lambda: bool(new := workers(install)) and not new & old):
        raise DeployError(
            f"nginx did not take the new config within 10 s: its error log {install.nginx_error_log} says why"
        )


def workers(install: Install) -> set[int]:
    """nginx's workers that take new connections: after a reload, the old ones only finish
    what they have ("worker process is shutting down") and are not counted."""
    try:
        master = int(install.nginx_pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return set()
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
            title = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == master and b"worker process" in title and b"shutting down" not in title:
            found.add(int(stat.parent.name))
    return found


def _reload(argv: list[str]) -> None:
    reloaded = proc.attempt(argv)
    if reloaded.returncode != 0:
        raise DeployError(
            f"nginx -s reload failed ({reloaded.stderr.strip()}): is nginx running? start it (systemctl start nginx)"
        )


# ---- what nginx serves -----------------------------------------------------------------------
def challenge_answer(install: Install) -> str:
    """Serve a probe token through the ACME location on port 80, as the CA fetches it.
    Returns what was seen: "ok", or the status or error in its place."""
    folder = install.acme_webroot / ".well-known" / "acme-challenge"
    folder.mkdir(parents=True, exist_ok=True)
    token = f"deploytool-probe-{secrets.token_hex(8)}"
    (folder / token).write_text(token)
    (folder / token).chmod(0o644)
    # The client closes first (keep-alive): no TIME_WAIT is left on nginx's port.
    conn = http.client.HTTPConnection("127.0.0.1", install.http_port, timeout=2)
    try:
        conn.request("GET", f"/.well-known/acme-challenge/{token}", headers={"Host": install.site})
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        return str(error) or type(error).__name__
    finally:
        conn.close()
        (folder / token).unlink(missing_ok=True)
    return "ok" if response.status == 200 and body == token.encode() else f"HTTP {response.status}"
