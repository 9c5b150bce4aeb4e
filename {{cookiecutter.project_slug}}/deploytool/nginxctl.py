"""The install's nginx while its site changes: which of the site's two configs is
enabled, `nginx -t` before every reload, and waiting until a reload has taken effect.

An install has two nginx sites and enables exactly one (both answer port 80 for the same
names): the final HTTPS site, or the bootstrap site that serves nothing but the ACME
challenge while the first certificate is issued (seed 000 §3.1). A sandbox runs its own
nginx (deploytool up); a server has the system's, reloaded through systemd when it runs.
"""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from . import services
from .errors import DeployError
from .layout import Install
from .sandbox import Nginx

# What one path was: absent (None), a link (its target, b""), or a file (its bytes, mode).
State = tuple[str, bytes] | tuple[bytes, int] | None


def final_site(install: Install) -> str:
    return f"{install.site}.nginx.conf"


def bootstrap_site(install: Install) -> str:
    return f"{install.site}_letsencrypt.nginx.conf"


def available(install: Install, name: str) -> Path:
    return install.nginx_dir / "sites-available" / name


def enabled(install: Install, name: str) -> Path:
    return install.nginx_dir / "sites-enabled" / name


def enabled_sites(install: Install) -> list[str]:
    """Which of the install's two sites are enabled (normally one)."""
    return [name for name in (final_site(install), bootstrap_site(install)) if enabled(install, name).is_symlink()]


def enable(install: Install, name: str) -> None:
    """Enable one of the install's two sites and disable the other (never both: they
    answer port 80 for the same names). Takes effect at the next reload."""
    for other in (final_site(install), bootstrap_site(install)):
        if other != name and enabled(install, other).is_symlink():
            enabled(install, other).unlink()
    link = enabled(install, name)
    target = Path("../sites-available") / name
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{name}.new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


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
    if install.sandbox:
        Nginx(install).test()
        return
    proc = subprocess.run([services.program("nginx"), "-t", "-q"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeployError(f"nginx -t failed, nginx keeps its previous config: {proc.stderr.strip()}")


def running(install: Install) -> bool:
    """Whether nginx runs (the sandbox's own, or the system's: Debian's pid file)."""
    return services.pid_alive(install.system("/run/nginx.pid"))


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
                "start the stack with `python -m deploytool up`, then run cert again"
            )
        _reload([*nginx.argv("-s", "reload")])
    elif not (
        shutil.which("systemctl")
        and Path("/run/systemd/system").is_dir()
        and subprocess.run(["systemctl", "reload", "nginx"], capture_output=True).returncode == 0
    ):
        _reload([services.program("nginx"), "-s", "reload"])
    if not wait_until(lambda: bool(new := workers(install)) and not new & old):
        log = install.log_dir / "nginx.error.log" if install.sandbox else Path("/var/log/nginx/error.log")
        raise DeployError(f"nginx did not take the new config within 10 s: its error log {log} says why")


def workers(install: Install) -> set[int]:
    """nginx's workers that take new connections: after a reload, the old ones only finish
    what they have ("worker process is shutting down") and are not counted."""
    try:
        master = int(install.system("/run/nginx.pid").read_text().split()[0])
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
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeployError(
            f"nginx -s reload failed ({proc.stderr.strip()}): is nginx running? start it (systemctl start nginx)"
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


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll a condition (a reload takes effect within milliseconds, asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
