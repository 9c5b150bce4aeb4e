"""Writes on the embedded default: the home page (a row per visit, on SQLite) under load,
with the SQLite options the generated settings_local.py sets and with plain NAME only, side
by side in one run.

    sudo .venv/bin/python -m bench.sqlite [--duration 6] [--connections 16] [--rounds 3]

As root, like the tests (the stack runs as `djltest`). It bakes a pro install (uWSGI,
SQLite; ports 64700-64729), brings it up, then in each round measures GET / with wrk for
both settings, in alternating order: "generated" (WAL, synchronous=NORMAL, busy_timeout
5 s, transaction_mode IMMEDIATE) and "plain" (a rollback journal and Django's defaults:
the settings of an install made before). Between the two it rewrites settings_local.py's
OPTIONS, puts the database file in the journal mode the settings expect (with the app
server stopped: leaving WAL needs the file to itself) and starts the app server again.
For each: requests/s, p99, failed requests (non-200 and socket errors) and the "database
is locked" errors the app server logged.

Target (writes on the embedded default): generated p99 <= 50 ms and 0 lock errors;
exit 1 on a miss.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

from bench.benchmark import Run, wrk_once
from bench.common import Stack, as_user, bake, prepare, stack_up, table

BLOCK = 64700
P99_TARGET_MS = 50.0
OPTIONS = re.compile(r'^        "OPTIONS": \{\n.*?^        \},\n', re.M | re.S)


def settings_variant(stack: Stack, generated: str, variant: str) -> None:
    """settings_local.py with the generated OPTIONS, or without them; the file's journal
    mode to match; the app server restarted with them."""
    path = stack.project / "etc/settings_local.py"
    text = generated if variant == "generated" else OPTIONS.sub("", generated)
    stack.write(path, text)
    mode = "wal" if variant == "generated" else "delete"
    database = stack.project / "data/db.sqlite3"
    # Leaving WAL needs the file to itself: the app server stops for the switch.
    as_user(stack.user, stack.project / "bin/appctl.sh", "stop")
    switch = "import sqlite3, sys; sqlite3.connect(sys.argv[1], timeout=10).execute(sys.argv[2]).fetchall()"
    done = as_user(stack.user, "python3", "-c", switch, database, f"PRAGMA journal_mode={mode}")
    assert done.returncode == 0, done.stderr
    started = as_user(stack.user, stack.project / "bin/appctl.sh", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    time.sleep(2)  # its workers up


def locked_errors(stack: Stack) -> int:
    log = stack.project / "logs/uwsgi.log"
    return log.read_text(errors="replace").count("database is locked") if log.exists() else 0


def measure(stack: Stack, args: argparse.Namespace) -> tuple[Run, int]:
    before = locked_errors(stack)
    run = wrk_once(stack, "/", args.connections, args.duration)
    return run, locked_errors(stack) - before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sqlite", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    user, venv = prepare("sqlite.py", ["git"], range(BLOCK, BLOCK + 30), "SQLite benchmark")
    baked = bake(user, venv, port_block_start=BLOCK, install_type="pro")
    with stack_up(baked) as (stack, _):
        generated = (stack.project / "etc/settings_local.py").read_text()
        assert OPTIONS.search(generated), "settings_local.py has no OPTIONS for SQLite"
        runs: dict[str, list[tuple[Run, int]]] = {"generated": [], "plain": []}
        for number in range(args.rounds):
            order = ["generated", "plain"] if number % 2 == 0 else ["plain", "generated"]
            for variant in order:
                settings_variant(stack, generated, variant)
                run, locked = measure(stack, args)
                runs[variant].append((run, locked))
                print(
                    f"round {number + 1} {variant:<9} {run.rps:6.0f} req/s  p99 {run.p99_ms:6.1f} ms  "
                    f"failed {run.failed}  locked {locked}",
                    flush=True,
                )
        rows, summary = [], {}
        for variant, measured in runs.items():
            p99 = statistics.median(run.p99_ms for run, _ in measured)
            rps = statistics.median(run.rps for run, _ in measured)
            failed = sum(run.failed for run, _ in measured)
            locked = sum(count for _, count in measured)
            summary[variant] = (p99, rps, failed, locked)
            rows.append((variant, f"{rps:.0f}", f"{p99:.1f}", failed, locked))
    print(f"\nGET / (a row per visit), {args.connections} connections, {args.rounds} rounds of {args.duration} s")
    print(table(["settings", "req/s", "p99 ms", "failed", "locked"], rows, right=(1, 2, 3, 4)))
    p99, _, failed, locked = summary["generated"]
    plain_p99 = summary["plain"][0]
    print(f"p99 generated / plain: {p99 / plain_p99:.2f}")
    held = p99 <= P99_TARGET_MS and locked == 0 and failed == 0
    print(f"target p99 <= {P99_TARGET_MS:.0f} ms, 0 locked, 0 failed: {'held' if held else 'missed'}")
    return 0 if held else 1


if __name__ == "__main__":
    raise SystemExit(main())
