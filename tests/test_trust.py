"""The boundaries that hold without a running stack: the project user towards root (root's
system part against a hostile checkout, logrotate's scripts), copies and moves of a
checkout, the app's address rule, and secrets on a full disk."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import BLOCKS, Stack, bake_for_user, root_copy, run, tool

BLOCK = BLOCKS["trust"]
VICTIM_BYTES = b"root-only secret 7f3a9c\n"


@pytest.fixture
def baked(project_user: str, project_venv: Path) -> Iterator[Stack]:
    """A pro server install (system root /), PostgreSQL, not running."""
    project = bake_for_user(
        project_user, project_venv, port_block_start=BLOCK, install_type="pro", database="postgresql"
    )
    yield Stack(project, project_user)
    run(["rm", "-rf", project.parent])


@pytest.fixture
def victims() -> Iterator[Path]:
    """A folder of root's with a root-only file: what a planted link or entry points at."""
    folder = Path(tempfile.mkdtemp(prefix="dj-layout-victim-"))
    (folder / "secret").write_bytes(VICTIM_BYTES)
    (folder / "secret").chmod(0o600)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def tree_bytes(folder: Path) -> bytes:
    """Everything under ``folder``, concatenated: to look for a victim's bytes."""
    return b"".join(path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file() and not path.is_symlink())


def digest(folder: Path) -> dict[str, str]:
    """Path -> sha256 of content (or link target), mode and owner, for everything under folder."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        body = os.readlink(path).encode() if path.is_symlink() else path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(folder))] = f"{hashlib.sha256(body).hexdigest()} {info.st_mode:o} {info.st_uid}"
    return found


# ---- root's system part against a hostile checkout ----------------------------------------------


def test_root_never_runs_the_users_code_or_templates(baked: Stack, victims: Path) -> None:
    system = baked.project.parent / "system"
    system.mkdir()
    baked.deploytool("init", "--install-type", "pro", "--system-root", str(system))
    # Run by root straight from the user's checkout, deploytool refuses before anything (this
    # is the unmodified code; a modified one is never what the documented command runs).
    refused = subprocess.run(
        [tool("python3"), "-m", "deploytool", "install", "--part", "system", "--root", system],
        cwd=baked.project,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "never runs the project user's code" in refused.stderr, refused.stderr
    copy = root_copy(baked.project)  # the admin's copy, at the reviewed revision
    marker = victims / "user-code-ran-as-root"
    # Then the user changes their deploytool and a template, and plants code in settings_local.py.
    init = baked.project / "deploytool/__init__.py"
    init.write_text(init.read_text() + f"\nimport os\nos.system('touch {marker}.import')\n")
    site_template = baked.project / "etc/templates/nginx/site.conf.j2"
    site_template.write_text(site_template.read_text() + "\n# EVIL line from the user's template\n")
    settings = baked.project / "etc/settings_local.py"
    settings.write_text(settings.read_text() + f"\nimport os\nos.system('touch {marker}.settings')\n")
    # From root's copy: the system part works, and nothing of the user's ran or was rendered.
    done = baked.deploytool_as_root("install", "--root", str(system), "--part", "system", cwd=copy)
    assert "installed" in done.stdout
    assert not list(victims.glob("user-code-ran-as-root*"))
    installed = (system / f"etc/nginx/sites-available/{baked.site}.nginx.conf").read_text()
    assert "EVIL" not in installed
    unit = (system / f"etc/systemd/system/{baked.site}_postgresql.service").read_text()
    assert f"-p {baked.env['PORT_POSTGRESQL']}" in unit  # read from settings_local.py, by parsing it
    # A copy of the code that another account could change is refused as well.
    os.chown(copy / "deploytool/install.py", pwd.getpwnam(baked.user).pw_uid, 0)
    tampered = baked.deploytool_as_root("install", "--root", str(system), "--part", "system", cwd=copy, check=False)
    assert tampered.returncode == 2 and "is not root's alone" in tampered.stderr, tampered.stderr


def test_root_follows_no_link_and_trusts_no_list_of_the_users(baked: Stack, victims: Path) -> None:
    system = baked.project.parent / "system"
    system.mkdir()
    copy = root_copy(baked.project)
    baked.system_part(system, cwd=copy)
    victim = victims / "secret"
    # Lists the user can write: entries pointing at the victim, absolute and relative.
    for name in ("installed.list", "rendered.list"):
        (baked.project / "etc" / name).write_text(f"{victim}\n../../../../../../{victim}\n")
    # htpasswd replaced by a link to the root-only file.
    htpasswd = baked.project / "etc/htpasswd"
    htpasswd.unlink()
    baked.as_user("ln", "-s", victim, htpasswd)
    refused = baked.deploytool_as_root("install", "--root", str(system), "--part", "system", cwd=copy, check=False)
    assert refused.returncode == 2 and "without following links" in refused.stderr, refused.stderr
    assert victim.read_bytes() == VICTIM_BYTES
    assert VICTIM_BYTES not in tree_bytes(system)
    # A hard link is no way around it: the file must be the user's own (and an htpasswd).
    htpasswd.unlink()
    for fake, said in ((b"not an htpasswd file\n", "not an htpasswd file"), (VICTIM_BYTES, "not an htpasswd file")):
        baked.as_user("sh", "-c", f"printf '%s' '{fake.decode().strip()}' > {htpasswd}")
        proc = baked.deploytool_as_root("install", "--root", str(system), "--part", "system", cwd=copy, check=False)
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    # The user's own render prunes only inside its etc/, whatever its list says.
    baked.deploytool("render")
    assert victim.read_bytes() == VICTIM_BYTES
    # The whole etc/ swapped for a link: refused too.
    etc = baked.project / "etc"
    etc.rename(baked.project / "etc.real")
    baked.as_user("ln", "-s", victims, etc)
    proc = baked.deploytool_as_root("install", "--root", str(system), "--part", "system", cwd=copy, check=False)
    assert proc.returncode == 2 and "refused" in proc.stderr, proc.stderr
    assert victim.read_bytes() == VICTIM_BYTES and VICTIM_BYTES not in tree_bytes(system)


def test_settings_local_that_injects_into_a_unit_is_refused(baked: Stack) -> None:
    system = baked.project.parent / "system"
    system.mkdir()
    copy = root_copy(baked.project)
    baked.system_part(system, cwd=copy)
    unit = system / f"etc/systemd/system/{baked.site}_postgresql.service"
    before = unit.read_bytes()
    settings = baked.project / "etc/settings_local.py"
    text = settings.read_text()
    settings.write_text(text.replace('"HOST": "127.0.0.1"', '"HOST": "127.0.0.1\\nExecStartPre=+/bin/sh -c id"'))
    proc = baked.deploytool_as_root("install", "--root", str(system), "--part", "system", cwd=copy, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "must be an IP address" in lines[0], proc.stderr
    assert unit.read_bytes() == before


def test_logrotate_as_root_creates_nothing_through_a_planted_link(baked: Stack, victims: Path) -> None:
    system = baked.project.parent / "system"
    system.mkdir()
    baked.system_part(system)
    env = Stack(baked.project, baked.user).env
    log_dir, run_dir = Path(env["LOG_DIR"]), Path(env["RUN_DIR"])
    baked.as_user("sh", "-c", f"echo line >> {log_dir}/nginx.access.log")
    # The user plants links where the postrotate used to write as root.
    for name in ("uwsgi.logreopen", "uwsgi.fifo"):
        baked.as_user("ln", "-sf", victims / f"created-through-{name}", run_dir / name)
    conf = system / f"etc/logrotate.d/{baked.site}"
    run([tool("logrotate"), "-s", baked.project.parent / "logrotate.state", "-f", conf])
    assert (log_dir / "nginx.access.log.1").exists()  # it did rotate
    assert sorted(path.name for path in victims.iterdir()) == ["secret"]


# ---- copies and moves ----------------------------------------------------------------------------


def test_a_copied_or_moved_checkout_leaves_the_original_and_serves(project_user: str, project_venv: Path) -> None:
    original = bake_for_user(project_user, project_venv, port_block_start=BLOCK)
    base = original.parent
    try:
        before = digest(original)
        copy = base / "copy"
        run(["runuser", "-u", project_user, "--", "cp", "-a", original, copy])
        stack = Stack(copy, project_user)
        stack.deploytool("render")
        stack.deploytool("up")
        assert Stack(copy, project_user).https_get("/health/")[0] == 200  # env.conf now names its sandbox
        stack.deploytool("down")
        moved = base / "moved"
        run(["mv", copy, moved])
        stack = Stack(moved, project_user)
        stack.deploytool("render")
        stack.deploytool("up")
        assert Stack(moved, project_user).https_get("/health/")[0] == 200
        stack.deploytool("down")
        assert digest(original) == before
    finally:
        for folder in (base / "copy", base / "moved"):
            if (folder / "etc/env.conf").exists():
                Stack(folder, project_user).deploytool("down", check=False)
        run(["rm", "-rf", base])


# ---- the app server's address ---------------------------------------------------------------------

REFUSED_BINDS = [
    "0.0.0.0",
    "::",
    "::ffff:0.0.0.0",
    "::ffff:0:0",
    "0:0:0:0:0:ffff:0.0.0.0",
    "0000:0000:0000:0000:0000:ffff:0000:0000",
    "[::ffff:0.0.0.0]",
    "127.0.0.1",
    "::1",
    "::ffff:127.0.0.1",
    "8.8.8.8",
    "::ffff:8.8.8.8",
    "2001:4860:4860::8888",
    "224.0.0.1",
    "169.254.10.1",
    "fe80::1",
    "localhost",
]


def test_app_bind_takes_only_private_unicast_addresses(baked: Stack) -> None:
    env_conf = (baked.project / "etc/env.conf").read_bytes()
    for address in REFUSED_BINDS:
        proc = baked.deploytool("init", "--install-type", "pro", "--app-bind", address, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (address, proc.stderr)
        assert "it must be a unicast address of a private network" in lines[0] or "not an IP address" in lines[0]
        assert (baked.project / "etc/env.conf").read_bytes() == env_conf, address  # nothing changed


# ---- secrets ---------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(project_user: str, project_venv: Path) -> Iterator[Path]:
    """A baked install on a tmpfs of its own, which the test can fill."""
    mount = Path(tempfile.mkdtemp(prefix="dj-layout-tmpfs-"))
    run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", mount])
    try:
        project = bake_for_user(project_user, project_venv, parent=str(mount), port_block_start=BLOCK)
        yield project
    finally:
        run(["umount", "-l", mount])
        mount.rmdir()


def fill(folder: Path, user: str) -> None:
    """Use every free byte of the filesystem (as the user would hit a full disk)."""
    subprocess.run(
        ["runuser", "-u", user, "--", "dd", "if=/dev/zero", f"of={folder}/filler", "bs=64k"],
        capture_output=True,
    )


def test_init_on_a_full_disk_leaves_whole_secrets_or_none(small_disk: Path, project_user: str) -> None:
    stack = Stack(small_disk, project_user)
    etc = small_disk / "etc"
    trio = {name: (etc / name).read_bytes() for name in ("settings_local.py", "htpasswd", "admin_password")}
    # settings_local.py lost, the disk full: init fails and leaves no empty file behind.
    (etc / "settings_local.py").unlink()
    fill(small_disk.parent, project_user)
    proc = stack.deploytool("init", "--install-type", "dev", check=False)
    assert proc.returncode == 2 and "could not write" in proc.stderr and "No space left" in proc.stderr, proc.stderr
    assert not (etc / "settings_local.py").exists()
    assert not [path for path in etc.iterdir() if path.name.startswith(".settings_local")]
    assert (etc / "htpasswd").read_bytes() == trio["htpasswd"]
    # Space again: the missing piece is made, the other two kept byte for byte.
    (small_disk.parent / "filler").unlink()
    made = stack.deploytool("init", "--install-type", "dev")
    assert "made" in made.stdout and "settings_local.py" in made.stdout
    assert (etc / "settings_local.py").stat().st_mode & 0o777 == 0o600
    assert "SECRET_KEY" in (etc / "settings_local.py").read_text()
    assert (etc / "settings_local.py").read_bytes() != trio["settings_local.py"]  # a new secret
    assert (etc / "htpasswd").read_bytes() == trio["htpasswd"]
    assert (etc / "admin_password").read_bytes() == trio["admin_password"]
    # htpasswd lost: it and the admin password are made anew, settings_local.py kept.
    settings = (etc / "settings_local.py").read_bytes()
    (etc / "htpasswd").unlink()
    stack.deploytool("init", "--install-type", "dev")
    assert (etc / "settings_local.py").read_bytes() == settings
    assert (etc / "htpasswd").read_bytes() != trio["htpasswd"]
    assert (etc / "admin_password").read_bytes() != trio["admin_password"]
    # An empty secret is never taken for a good one.
    (etc / "settings_local.py").write_text("")
    proc = stack.deploytool("init", "--install-type", "dev", check=False)
    assert proc.returncode == 2 and "settings_local.py is empty" in proc.stderr, proc.stderr
