"""Writing local files safely: whole or not at all, with the mode they need."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import DeployError


def write_atomic(path: Path, text: str, mode: int = 0o644, owner: str | None = None) -> bool:
    """Replace ``path`` with ``text`` in one rename: readers see the old file or the whole
    new one, never a part. The temporary file has ``mode`` from its first byte (mkstemp
    makes it 0600) and reaches the disk before the rename, so a full disk or a crash
    leaves the old file, never an empty one. ``owner`` (user and group of that name) is
    set before the rename. Returns whether anything changed."""
    if path.is_file() and not path.is_symlink():
        same = path.read_text() == text and (path.stat().st_mode & 0o777) == mode
        if same and (owner is None or path.owner() == owner):
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if owner is not None:
            shutil.chown(tmp, owner, owner)
        os.replace(tmp, path)
    except OSError as error:
        os.unlink(tmp)
        raise DeployError(f"could not write {path} ({error.strerror}): it is left as it was") from None
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


def prune(manifest: Path, base: Path, current: set[Path], owned: Callable[[Path], bool] | None = None) -> list[Path]:
    """Remove the files a previous run listed in ``manifest`` that this run no longer makes
    (an answer changed: the gunicorn unit replaces the uWSGI one), then list ``current``.

    Entries are relative to ``base``: a checkout copied or moved elsewhere prunes its own
    files, never the original's. An entry that leaves ``base`` (absolute, ``..``, through
    a link) or that ``owned`` does not accept is never removed."""
    previous = set(manifest.read_text().split("\n")) if manifest.is_file() else set()
    listed = {path.relative_to(base).as_posix() for path in current}
    stale = []
    for entry in sorted(previous - listed):
        path = inside(base, entry)
        if path is not None and path.is_file() and not path.is_symlink() and (owned is None or owned(path)):
            path.unlink()
            stale.append(path)
    write_atomic(manifest, "".join(f"{entry}\n" for entry in sorted(listed)))
    return stale


def inside(base: Path, entry: str) -> Path | None:
    """``base / entry`` if it stays inside ``base`` once links are resolved, else None."""
    if not entry or Path(entry).is_absolute():
        return None
    path = base / entry
    try:
        path.parent.resolve(strict=True).relative_to(base.resolve())
    except (OSError, ValueError):
        return None
    return path


def open_no_links(path: Path, flags: int = os.O_RDONLY) -> int:
    """Open ``path`` without following a symbolic link anywhere on the way (each folder is
    opened relative to the one before, with O_NOFOLLOW): a link the project user planted
    in their checkout never leads root elsewhere. Returns the file descriptor."""
    if not path.is_absolute():
        raise DeployError(f"{path}: an absolute path is needed")
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in path.parts[1:-1]:
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        return os.open(path.name, flags | os.O_NOFOLLOW, dir_fd=fd)
    except OSError as error:
        reason = "a symbolic link" if error.errno in (errno.ELOOP, errno.ENOTDIR) else error.strerror
        raise DeployError(f"{path} cannot be opened without following links ({reason}): refused") from None
    finally:
        os.close(fd)


def read_user_file(path: Path, uid: int | None = None, limit: int = 1 << 20) -> bytes:
    """The bytes of a regular file of the project user's, read without following links.
    With ``uid``, the file must belong to that user (a hard link to someone else's file
    is refused too)."""
    fd = open_no_links(path)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DeployError(f"{path} is not a regular file: refused")
        if uid is not None and info.st_uid != uid:
            raise DeployError(f"{path} belongs to uid {info.st_uid}, not to the project user ({uid}): refused")
        if info.st_size > limit:
            raise DeployError(f"{path} is {info.st_size} bytes, more than such a file ever has: refused")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(limit)
    finally:
        os.close(fd)
