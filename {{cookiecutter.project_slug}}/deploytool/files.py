"""Writing local files safely: whole or not at all, with the mode they need."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import DeployError


def write_atomic(path: Path, text: str, mode: int = 0o644) -> bool:
    """Replace ``path`` with ``text`` in one rename. Returns whether anything changed."""
    if path.exists() and path.read_text() == text and (path.stat().st_mode & 0o777) == mode:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return True


def ensure_link(link: Path, target: Path) -> bool:
    """Make ``link`` point at ``target``; a real file or folder in the way is never replaced."""
    if link.is_symlink():
        if Path(os.readlink(link)) == target:
            return False
        link.unlink()
    elif link.exists():
        raise DeployError(f"{link} exists and is not a link: move it away, then run again (nothing was changed)")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return True


def prune(manifest: Path, current: set[Path]) -> list[Path]:
    """Remove the files a previous run listed in ``manifest`` that this run no longer makes
    (an answer changed: the gunicorn unit replaces the uWSGI one), then list ``current``."""
    previous = set(map(Path, manifest.read_text().split("\n"))) if manifest.exists() else set()
    stale = sorted(path for path in previous - current if path.name and path.is_file())
    for path in stale:
        path.unlink()
    write_atomic(manifest, "".join(f"{path}\n" for path in sorted(current)))
    return stale
