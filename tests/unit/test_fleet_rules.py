"""etc/fleet.ini's roles and the nftables rules rendered from them and the port map: what
each role opens, to whom, and that nftables itself accepts every rendered file (nft -c,
in a user and network namespace of its own when not root: nothing of this host's changes).
The rules at work, loaded in hosts of their own, are test_fleet's."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from deploytool import configcheck, firewall, inventory
from deploytool.dedicated import MediaStore, Redis, for_install
from deploytool.errors import DeployError
from deploytool.init import init
from deploytool.install import next_step
from deploytool.jobs import for_host as jobs_here
from deploytool.layout import PROJECT_JSON, Install
from deploytool.project import Project
from deploytool.render import FIREWALL, SETTINGS_LOCAL, outputs, render_text
from support import program
from support.golden import checkout

ENTRY = "stage-gunicorn-supervisor-postgresql-redis"  # PostgreSQL and Redis: a data host has both
FLEET = """\
[lb]
address = lb.example.com   ; SSH by name: the private address below is for the rules
private = 10.0.0.10
roles = front
[web1]
address = 10.0.0.11
roles = app
[web2]
address = 10.0.0.12
[db]
address = fd00::13
roles = data, app          ; any order: one order everywhere
"""


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    with checkout(ENTRY) as folder:
        (folder / "etc/fleet.ini").write_text(FLEET)
        yield folder


def host(root: Path, name: str = "", app_bind: str = "") -> Install:
    return Install(Project.load(root / PROJECT_JSON), root, "stage", app_bind=app_bind, fleet_host=name)


def rules_text(install: Install) -> str:
    return render_text(install, FIREWALL)


def nft_check(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.nft"
    path.write_text(text)
    argv = [program("nft", "nftables"), "-c", "-f", str(path)]
    return subprocess.run(argv if os.geteuid() == 0 else ["unshare", "-rn", *argv], capture_output=True, text=True)


# ---- the inventory --------------------------------------------------------------------------
def test_roles_and_private_addresses_come_from_fleet_ini(root: Path) -> None:
    hosts = host(root).fleet
    assert {name: h.roles for name, h in hosts.items()} == {
        "lb": ("front",),
        "web1": ("app",),
        "web2": ("app",),
        "db": ("app", "data"),
    }
    assert {name: h.private for name, h in hosts.items()} == {
        "lb": "10.0.0.10",
        "web1": "10.0.0.11",
        "web2": "10.0.0.12",
        "db": "fd00::13",
    }
    assert hosts["web1"].root == PurePosixPath(f"/home/{hosts['web1'].user}/project-baz.example/stage")


def test_a_host_without_roles_is_an_app_host_and_a_public_address_is_no_private_one(tmp_path: Path) -> None:
    path = tmp_path / "fleet.ini"
    path.write_text("[web1]\naddress = 8.8.8.8\n[web2]\n")
    hosts = inventory.load(path, "baz", lambda user: PurePosixPath("/home", user))
    assert [(h.roles, h.private, h.address) for h in hosts.values()] == [
        (("app",), "", "8.8.8.8"),
        (("app",), "", "web2"),
    ]


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ("roles = app, cache", "roles = 'app, cache': give one or more of front, app, data"),
        ("roles = ,", "roles = ',': give one or more of front, app, data"),
        ("private = 8.8.8.8", "private 8.8.8.8 is a public address"),
        ("private = web1.lan", "private 'web1.lan' is not an IP address"),
        ("firewall = off", "unknown key firewall"),
    ],
)
def test_a_wrong_line_names_the_section_the_value_and_the_rule(tmp_path: Path, section: str, words: str) -> None:
    path = tmp_path / "fleet.ini"
    path.write_text(f"[web1]\naddress = 10.0.0.11\n{section}\n")
    with pytest.raises(DeployError, match=re.escape(words)) as error:
        inventory.load(path, "baz", lambda user: PurePosixPath("/home", user))
    assert f"{path} [web1]" in str(error.value)


def test_a_fleet_host_that_fleet_ini_does_not_have_is_refused(root: Path) -> None:
    with pytest.raises(DeployError, match=r"FLEET_HOST='web9' \(--fleet-host\) is not a section .*lb, web1, web2, db"):
        host(root, "web9").roles  # noqa: B018
    assert host(root).roles == ("front", "app", "data")  # no FLEET_HOST: a single server


# ---- the rules of each role -------------------------------------------------------------------
def rule_lines(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if "dport" in line]


def test_a_single_server_keeps_every_port_of_the_install_to_itself(root: Path, tmp_path: Path) -> None:
    install = host(root)
    text = rules_text(install)
    assert rule_lines(text) == ["tcp dport 60010-60019 reject with tcp reset", "udp dport 60010-60019 reject"]
    assert 'iif "lo" accept' in text and "table inet djl_stage_project_baz_example {" in text
    assert nft_check(text, tmp_path).returncode == 0, nft_check(text, tmp_path).stderr


def test_an_app_host_opens_its_app_port_to_the_fronts_only(root: Path, tmp_path: Path) -> None:
    text = rules_text(host(root, "web1", app_bind="10.0.0.11"))
    app = firewall.rules(host(root, "web1", app_bind="10.0.0.11")).openings
    assert [(o.port, o.ipv4, o.ipv6) for o in app] == [(60011, ["10.0.0.10"], [])]
    assert rule_lines(text)[0] == "tcp dport 60011 ip saddr { 10.0.0.10 } accept"
    assert rule_lines(text)[1:] == ["tcp dport 60010-60019 reject with tcp reset", "udp dport 60010-60019 reject"]
    checked = nft_check(text, tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_a_data_host_opens_postgresql_and_redis_to_the_app_hosts_only(root: Path, tmp_path: Path) -> None:
    """db holds the data (and is an app host too): PostgreSQL's and Redis's ports for the app
    hosts, the media store's for the fronts and app hosts, the app port for the front, nothing else."""
    text = rules_text(host(root, "db", app_bind="fd00::13"))
    assert rule_lines(text)[:8] == [
        "tcp dport 60011 ip saddr { 10.0.0.10 } accept",
        "tcp dport 60015 ip saddr { 10.0.0.11, 10.0.0.12 } accept",
        "tcp dport 60015 ip6 saddr { fd00::13 } accept",
        "tcp dport 60016 ip saddr { 10.0.0.11, 10.0.0.12 } accept",
        "tcp dport 60016 ip6 saddr { fd00::13 } accept",
        "tcp dport 60019 ip saddr { 10.0.0.10, 10.0.0.11, 10.0.0.12 } accept",
        "tcp dport 60019 ip6 saddr { fd00::13 } accept",
        "tcp dport 60010-60019 reject with tcp reset",
    ]
    checked = nft_check(text, tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_the_data_hosts_postgresql_is_every_hosts_and_admits_the_app_hosts(root: Path) -> None:
    """One database: every host's settings name the data host's private address, only the
    data host runs the cluster, and its pg_hba.conf admits the app hosts by address."""
    web1, db = host(root, "web1", app_bind="10.0.0.11"), host(root, "db")
    assert web1.data_address == db.data_address == "fd00::13"
    assert (web1.runs_database, db.runs_database, host(root).runs_database) == (False, True, True)
    assert host(root).data_address == "127.0.0.1"  # a single server: its own
    assert db.database_clients == ["10.0.0.11", "10.0.0.12", "fd00::13"] and web1.database_clients == []
    hba = render_text(db, "postgresql/pg_hba.conf.j2")
    lines = [line.split("#")[0].split() for line in hba.splitlines() if line.startswith("host")]
    user = db.project.user
    assert lines == [
        ["host", "all", user, address, "scram-sha-256"]
        for address in ("127.0.0.1/32", "::1/128", "10.0.0.11/32", "10.0.0.12/32", "fd00::13/128")
    ]


def test_the_data_hosts_redis_is_every_hosts_cache_and_session_store(root: Path, tmp_path: Path) -> None:
    """One cache: every host's settings name the data host's Redis with a password, sessions
    are cached_db; only the data host runs Redis, on its private address, and its command line
    (ps, the unit file) holds the password's hash, never the password."""
    web1, db = host(root, "web1", app_bind="10.0.0.11"), host(root, "db")
    assert web1.shares_cache and db.shares_cache and not host(root).shares_cache
    secrets = {"secret_key": "k" * 50, "db_password": "d" * 32, "redis_password": "r" * 32, "media_password": "m" * 32}
    settings = render_text(web1, SETTINGS_LOCAL, **secrets, media_writer="media")
    assert '"LOCATION": "redis://[fd00::13]:60016/0"' in settings, settings
    assert 'SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"' in settings
    assert [server.name for server in for_install(web1)] == []  # the app host runs neither
    local = tmp_path / "settings_local.py"
    local.write_text(settings)
    redis = Redis(db)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Install, "settings_local", property(lambda _: local))
        argv = redis.foreground()
        assert ["--bind", "fd00::13", "--port", "60016"] == argv[1:5], argv
        assert f"#{hashlib.sha256(b'r' * 32).hexdigest()}" in argv and "r" * 32 not in " ".join(argv)
        assert argv[argv.index("+@all") + 1] == "-@admin"  # no CONFIG SET, MODULE LOAD, SHUTDOWN
        local.write_text(settings.replace("r" * 32, "short"))
        with pytest.raises(DeployError, match="no REDIS_PASSWORD of 16 characters or more"):
            redis.foreground()


def test_the_data_hosts_media_store_holds_every_hosts_uploads(root: Path) -> None:
    """One media store: every host's settings save uploads there (with MEDIA_PASSWORD); only
    the data host renders and runs it, reading for the fronts and app hosts, writing for the
    app hosts with the password; the front serves /media/ from it, read only. A single server
    keeps its uploads in its own media/."""
    web1, db, lb, single = host(root, "web1", app_bind="10.0.0.11"), host(root, "db"), host(root, "lb"), host(root)
    assert (web1.runs_media_store, db.runs_media_store, lb.runs_media_store) == (False, True, False)
    assert not single.shares_media and not single.runs_media_store
    secrets = {"secret_key": "k" * 50, "db_password": "d" * 32, "redis_password": "r" * 32, "media_password": "m" * 32}
    settings = render_text(web1, SETTINGS_LOCAL, **secrets, media_writer="media")
    assert f'"BACKEND": "{web1.project.project_slug}.media_store.MediaStore"' in settings
    assert '"location": "http://[fd00::13]:60019/"' in settings and 'MEDIA_PASSWORD = "' + "m" * 32 + '"' in settings
    assert "MediaStore" not in render_text(single, SETTINGS_LOCAL, **secrets)
    conf_of = "nginx/media.conf.j2"
    assert conf_of in outputs(db) and not {conf_of} & set(outputs(web1) | outputs(lb) | outputs(single))
    assert [server.name for server in for_install(db)][-1] == "media"
    store = MediaStore(db)
    argv = store.foreground()  # as systemd and supervisor run it: the config, no daemon
    assert argv[1:3] == ["-c", str(db.media_store_conf)] and argv[-1] == f"pid {store.pidfile}; daemon off;", argv
    conf = render_text(db, "nginx/media.conf.j2")
    assert "listen [fd00::13]:60019;" in conf
    reads, writes = conf.split("limit_except GET HEAD", 1)
    allowed = re.findall(r"allow (\S+);", reads)
    assert allowed == ["10.0.0.10", "10.0.0.11", "10.0.0.12", "fd00::13"], conf
    assert re.findall(r"allow (\S+);", writes) == ["10.0.0.11", "10.0.0.12", "fd00::13"], conf  # not the front
    assert f'auth_basic_user_file "{db.media_htpasswd}"' in writes
    site = render_text(lb, "nginx/site.conf.j2")
    media = site.split("location ^~ /media/ {", 1)[1].split("\n    }", 1)[0]
    assert "proxy_pass http://[fd00::13]:60019/;" in media and "limit_except GET {" in media, media
    assert "alias" not in media
    single_site = render_text(single, "nginx/site.conf.j2")
    assert f'alias "{single.media_root}/";' in single_site and "60019" not in single_site


def test_the_backup_runs_where_the_data_is_and_the_watch_on_every_host(root: Path) -> None:
    """jobs.ini's `on`: with a data host, the backup is that host's (whatever its JOBS), the
    watch every host's, the rest the one host's with JOBS=on; a single server runs them all,
    and an unknown placement is refused by name."""

    def names(install: Install) -> list[str]:
        return [job.name for job in jobs_here(install)]

    assert names(host(root)) == ["backup", "clearsessions", "watch"]
    web1, web2 = host(root, "web1", app_bind="10.0.0.11"), host(root, "web2", app_bind="10.0.0.12")
    web2 = Install(web2.project, web2.root, "stage", app_bind="10.0.0.12", fleet_host="web2", jobs=False)
    db = Install(web1.project, web1.root, "stage", fleet_host="db", jobs=False)
    assert (names(web1), names(web2), names(db)) == (["clearsessions", "watch"], ["watch"], ["backup", "watch"])
    jobs_ini = root / "etc/templates/jobs.ini"
    text = jobs_ini.read_text()
    jobs_ini.write_text(text.replace("on = data", "on = db"))
    try:
        with pytest.raises(DeployError, match=r"\[backup\]: on 'db': one of jobs, data, every; nothing was rendered"):
            jobs_here(web1)
    finally:
        jobs_ini.write_text(text)


def test_two_data_hosts_are_refused(root: Path) -> None:
    (root / "etc/fleet.ini").write_text(
        FLEET.replace("[web2]\naddress = 10.0.0.12\n", "[web2]\naddress = 10.0.0.12\nroles = data\n")
    )
    try:
        with pytest.raises(DeployError, match="web2, db all have the role data: one host holds the site's data"):
            host(root, "web1").data_address  # noqa: B018
    finally:
        (root / "etc/fleet.ini").write_text(FLEET)


def test_ipv6_sources_get_their_own_rule(tmp_path: Path, root: Path) -> None:
    (root / "etc/fleet.ini").write_text(FLEET.replace("address = 10.0.0.11", "address = fd00::11"))
    try:
        install = host(root, "db")
        text = rules_text(install)
        assert "tcp dport 60015 ip6 saddr { fd00::11, fd00::13 } accept" in text
        assert "tcp dport 60015 ip saddr { 10.0.0.12 } accept" in text
        assert nft_check(text, tmp_path).returncode == 0
    finally:
        (root / "etc/fleet.ini").write_text(FLEET)


def test_a_front_without_a_private_address_is_refused_by_name(tmp_path: Path, root: Path) -> None:
    (root / "etc/fleet.ini").write_text(FLEET.replace("private = 10.0.0.10\n", ""))
    try:
        with pytest.raises(DeployError, match=r"lb \(front\) has no private address: add `private = ADDRESS`"):
            firewall.rules(host(root, "web1", app_bind="10.0.0.11"))
    finally:
        (root / "etc/fleet.ini").write_text(FLEET)


def test_an_app_server_on_tcp_without_fleet_host_gets_no_rules_and_check_says_why(root: Path, tmp_path: Path) -> None:
    install = host(root, app_bind="10.0.0.11")
    assert FIREWALL not in outputs(install)
    (result,) = configcheck.check_firewall(install, tmp_path)
    assert not result.ok and "APP_BIND is set but not FLEET_HOST" in result.detail, result
    assert "deploytool init --fleet-host NAME" in result.detail


def test_nft_check_fails_on_a_broken_rule(tmp_path: Path, root: Path) -> None:
    """The check that passes the rendered rules is one that can fail."""
    broken = rules_text(host(root)).replace("reject with tcp reset", "reject with tcp resett")
    checked = nft_check(broken, tmp_path)
    assert checked.returncode != 0 and "syntax error" in checked.stderr, checked


def test_the_next_step_starts_what_each_role_runs() -> None:
    """After the user part, root is told to start what this host runs: a front or a data
    host without the role app never gets the app server's unit; a data host no certificate."""
    with checkout("pro-gunicorn-systemd-postgresql") as folder:
        (folder / "etc/fleet.ini").write_text(
            "[lb]\naddress = 10.0.0.10\nroles = front\n"
            "[web1]\naddress = 10.0.0.11\n"
            "[db]\naddress = 10.0.0.13\nroles = data\n"
        )

        def step(name: str) -> str:
            install = Install(Project.load(folder / PROJECT_JSON), folder, "pro", fleet_host=name, jobs=False)
            return next_step(install, "user")

        web1, lb, db = step("web1"), step("lb"), step("db")
        service = Install(Project.load(folder / PROJECT_JSON), folder, "pro").service
        assert f"enable --now {service}" in web1 and "deploytool cert" in web1, web1
        assert service not in lb and "deploytool cert" in lb, lb
        assert service not in db and "deploytool cert" not in db and "a data host" in db, db


def test_an_app_host_without_the_data_hosts_settings_is_refused_before_anything_is_written(
    root: Path, tmp_path: Path
) -> None:
    """Fresh secrets on web1 would match neither the data host's database nor its Redis: init
    names the copy to make, and leaves the checkout as it was."""
    copy = tmp_path / "checkout"
    shutil.copytree(root, copy)
    before = sorted(path.relative_to(copy) for path in copy.rglob("*"))
    with pytest.raises(
        DeployError, match=r"database and cache are db's .*scp -p fd00::13:.*/etc/settings_local.py etc/"
    ):
        init(copy, "stage", fleet_host="web1")
    assert sorted(path.relative_to(copy) for path in copy.rglob("*")) == before
