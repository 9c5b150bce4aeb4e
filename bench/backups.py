"""Backup and restore figures of the generated repo, beside doing it by hand, in one run.

    sudo .venv/bin/python -m bench.backups [--database-mb 100] [--media-mb 1024] [--day2-mb 20]

As root, like the tests (it runs the install as the project user `djltest`). It bakes a pro
install with PostgreSQL (ports 64650-64699), brings its stack up, fills the database with a
table of about --database-mb MB and media/ with --media-mb MB of random 1 MB files, then:

- day 1: `deploytool backup` (pg_dump custom format, media by rsync, SHA-256 manifest), and
  the same data by hand: `pg_dump -Fc` and `tar -cf` of media/ (the baseline);
- day 2, after --day2-mb MB of new uploads and more rows: `deploytool backup` again, whose
  unchanged media are hard links (its cost is what `du` adds for it), and by hand again
  (a whole new tar);
- the restore of day 2: `deploytool restore` (it backs the current data up first, restores
  into a fresh database, rsyncs media/, waits for /health/) and by hand: `pg_restore` into a
  fresh database and `tar -xf`.

Prints the table with each figure beside the baseline's, as a ratio (deploytool / by hand).
No target: the figures are for the README.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Stack, as_user, bake, local_settings, prepare, stack_up, table

BLOCK = 64650


def timed(action: object) -> float:
    started = time.monotonic()
    action()  # type: ignore[operator]
    return time.monotonic() - started


def du(*paths: Path) -> int:
    """Bytes on disk of the paths together: a file hard-linked from two of them counts once."""
    out = subprocess.run(["du", "-s", "-B1", "-c", *map(str, paths)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1].split()[0])


def mb(size: float) -> str:
    return f"{size / 2**20:.1f} MB"


class Install:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        db = local_settings(stack.project)["DATABASES"]["default"]
        self.db = db
        self.env = {**os.environ, "PGPASSWORD": str(db["PASSWORD"])}
        self.where = ["-h", str(db["HOST"]), "-p", str(db["PORT"]), "-U", str(db["USER"])]
        self.bin = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1].parent
        self.scratch = stack.project.parent / "by-hand"
        as_user(stack.user, "mkdir", "-p", self.scratch)

    def user(self, *argv: str | Path, timeout: float = 3600) -> str:
        done = as_user(self.stack.user, *argv, cwd=self.stack.project, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, argv))} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def pg(self, program: str, *args: str | Path) -> str:
        return self.user("env", f"PGPASSWORD={self.db['PASSWORD']}", self.bin / program, *self.where, *args)

    def fill(self, database_mb: int, media_mb: int) -> None:
        rows = database_mb * 2**20 // 300  # ~300 bytes a row on disk
        self.pg(
            "psql",
            "-d",
            str(self.db["NAME"]),
            "-qc",
            "CREATE TABLE filler AS SELECT g AS id, md5(g::text) || repeat(md5(random()::text), 7) AS body "
            f"FROM generate_series(1, {rows}) g",
        )
        self.uploads(media_mb, "day1")

    def uploads(self, count_mb: int, prefix: str) -> None:
        folder = self.stack.project / "media/uploads"
        self.user("mkdir", "-p", folder)
        for n in range(count_mb):
            self.user(
                "dd", "if=/dev/urandom", f"of={folder / f'{prefix}-{n:04d}.bin'}", "bs=1M", "count=1", "status=none"
            )

    def database_bytes(self) -> int:
        query = f"SELECT pg_database_size('{self.db['NAME']}')"
        return int(self.pg("psql", "-d", "postgres", "-tAc", query).strip())

    def deploytool_backup(self, day: str) -> tuple[float, Path]:
        """A labelled backup: retention keeps one unlabelled backup a day, and both days of
        this run fall on one."""
        started = time.monotonic()
        out = self.user(self.stack.project / "bin/deploytool", "backup", "--label", day)
        seconds = time.monotonic() - started
        name = re.search(r"^backup: (\S+): ", out, re.M)
        assert name, out
        return seconds, (self.stack.project / "backups").resolve() / name.group(1)

    def by_hand_backup(self, day: str) -> tuple[float, int]:
        dump, tar = self.scratch / f"{day}.dump", self.scratch / f"{day}-media.tar"
        seconds = timed(lambda: self.pg("pg_dump", "-Fc", "-f", dump, str(self.db["NAME"])))
        seconds += timed(lambda: self.user("tar", "-cf", tar, "-C", self.stack.project, "media"))
        return seconds, dump.stat().st_size + tar.stat().st_size

    def by_hand_restore(self, day: str) -> float:
        fresh = f"{self.db['NAME']}_by_hand"
        target = self.scratch / f"{day}-restored"

        def restore() -> None:
            self.pg("dropdb", "--if-exists", fresh)
            self.pg("createdb", fresh)
            self.pg("pg_restore", "--no-owner", "-d", fresh, self.scratch / f"{day}.dump")
            self.user("mkdir", "-p", target)
            self.user("tar", "-xf", self.scratch / f"{day}-media.tar", "-C", target)

        seconds = timed(restore)
        self.pg("dropdb", fresh)
        return seconds


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backups", description=__doc__.split("\n")[0])
    parser.add_argument("--database-mb", type=int, default=100)
    parser.add_argument("--media-mb", type=int, default=1024)
    parser.add_argument("--day2-mb", type=int, default=20)
    args = parser.parse_args(argv)
    user, venv = prepare("backups.py", ["git", "initdb"], range(BLOCK, BLOCK + 30), "backup benchmark")
    for name in ("rsync", "du", "tar"):
        if shutil.which(name) is None:
            sys.exit(f"{name} is missing: apt-get install {name}")
    baked = bake(user, venv, port_block_start=BLOCK, install_type="pro", database="postgresql")
    with stack_up(baked) as (stack, _):
        install = Install(stack)
        print(f"filling: {args.database_mb} MB of rows, {args.media_mb} MB of media ...", flush=True)
        install.fill(args.database_mb, args.media_mb)
        database = install.database_bytes()
        media = du(stack.project / "media")
        print(f"database {mb(database)}, media {mb(media)}; day 1 ...", flush=True)
        day1_ours, day1 = install.deploytool_backup("day1")
        day1_hand, day1_hand_size = install.by_hand_backup("day1")
        print(f"day 2: {args.day2_mb} MB of new uploads ...", flush=True)
        install.uploads(args.day2_mb, "day2")
        install.pg(
            "psql",
            "-d",
            str(install.db["NAME"]),
            "-qc",
            "INSERT INTO filler SELECT id + 10000000, body FROM filler LIMIT 1000",
        )
        day2_ours, day2 = install.deploytool_backup("day2")
        day2_hand, day2_hand_size = install.by_hand_backup("day2")
        day2_cost = du(day1, day2) - du(day1)
        print("restore ...", flush=True)
        restore_ours = timed(lambda: install.user(stack.project / "bin/deploytool", "restore", day2.name))
        restore_hand = install.by_hand_restore("day2")
        rows = [
            ("day 1 backup: time", f"{day1_ours:.1f} s", f"{day1_hand:.1f} s", ratio(day1_ours, day1_hand)),
            ("day 1 backup: size", mb(du(day1)), mb(day1_hand_size), ratio(du(day1), day1_hand_size)),
            ("day 2 backup: time", f"{day2_ours:.1f} s", f"{day2_hand:.1f} s", ratio(day2_ours, day2_hand)),
            ("day 2 backup: disk it adds", mb(day2_cost), mb(day2_hand_size), ratio(day2_cost, day2_hand_size)),
            (
                "restore of day 2: time",
                f"{restore_ours:.1f} s",
                f"{restore_hand:.1f} s",
                ratio(restore_ours, restore_hand),
            ),
        ]
        print(f"\ndatabase {mb(database)} (pg_database_size), media {mb(media)}")
        print("by hand: pg_dump -Fc and tar -cf; pg_restore into a fresh database and tar -xf")
        print(table(["", "deploytool", "by hand", "ratio"], rows, right=(1, 2, 3)))
        print("(deploytool's restore includes its pre-restore backup and the /health/ check)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
