"""Does the stack grow with the host? The read-only page /visits/ (two queries, a template
loop of 50 rows) with the whole stack on 1 core and then on 2, no config edit between.

    sudo .venv/bin/python -m bench.scaling [--duration 6] [--connections 16] [--rounds 3]

As root, like the tests (the stack runs as `djltest`). It bakes a pro install for each app
server (SQLite; ports 64750-64779), brings it up (worker counts rendered from this host),
adds 200 visits (the page lists the 50 latest), then in each round pins every process of the
stack (nginx, the app server; `taskset -a -p`, which new workers inherit) to CPU 0, measures,
pins it to CPUs 0-1, measures. wrk itself is not pinned: on a 2-core host it shares the cores with the stack,
so the ceiling is below 2x.

Target (scale with the host): requests/s on 2 cores >= 1.7x those on 1; exit 1 on a miss.
Then, on 2 cores, the rendered worker count (one per core and one more) against two per
core (APP_WORKERS, rendered and reloaded between rounds): requests/s, p99 and the app
server's memory side by side, the figures behind deploytool/sizing.py's rule.
Prints the tables and writes scaling.png (default: .cache/bench/).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

from bench.benchmark import Run, ensure_matplotlib, tree_pss_mib, wrk_once
from bench.common import TEMPLATE, Stack, add_visits, bake, prepare, stack_up, table

BLOCK = 64750
TARGET = 1.7


def stack_pids(user: str) -> list[int]:
    out = subprocess.run(["pgrep", "-u", user], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def pin(user: str, cpus: str) -> None:
    for pid in stack_pids(user):
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True)


def measure(stack: Stack, args: argparse.Namespace) -> float:
    return measured(stack, args).rps


def measured(stack: Stack, args: argparse.Namespace) -> Run:
    run = wrk_once(stack, "/visits/", args.connections, args.duration)
    if run.failed:
        raise SystemExit(f"{run.failed} failed requests on /visits/")
    return run


def set_workers(stack: Stack, value: str) -> int:
    """APP_WORKERS in env.conf (empty: the host's rule), rendered, the app server reloaded;
    returns the processes the rendered config asks for."""
    env = stack.project / "etc/env.conf"
    text = re.sub(r"^APP_WORKERS=.*$", f"APP_WORKERS={value}", env.read_text(), flags=re.M)
    env.write_text(text)
    stack.deploytool("render")
    time.sleep(1.1)  # uWSGI's reload compares mtimes in whole seconds
    stack.as_user(stack.project / "bin/appctl.sh", "reload")
    config = Path(stack.env["APP_CONFIG"]).read_text()
    return int(re.search(r"^(?:  processes: |workers = )(\d+)", config, re.M).group(1))  # type: ignore[union-attr]


def workers_side_by_side(stack: Stack, args: argparse.Namespace) -> list[list[str]]:
    """The rendered count against two per core, rounds alternating: req/s, p99, MiB (PSS)."""
    cores = os.cpu_count() or 1
    found: dict[int, list[tuple[float, float, float]]] = {}
    for number in range(args.rounds):
        for value in ("", str(2 * cores)) if number % 2 == 0 else (str(2 * cores), ""):
            count = set_workers(stack, value)
            wrk_once(stack, "/visits/", args.connections, 1)  # new workers warm
            run = measured(stack, args)
            memory = tree_pss_mib(int(Path(stack.env["PIDFILE"]).read_text()))
            found.setdefault(count, []).append((run.rps, run.p99_ms, memory))
            print(f"  {count} workers: {run.rps:7.0f} req/s  p99 {run.p99_ms:6.1f} ms  {memory:5.0f} MiB", flush=True)
    set_workers(stack, "")
    return [
        [str(count), *(f"{statistics.median(run[i] for run in runs):.{1 if i == 1 else 0}f}" for i in range(3))]
        for count, runs in sorted(found.items())
    ]


def chart(rows: list[tuple[str, float, float]], path: Path, args: argparse.Namespace) -> None:
    """Requests/s of each app server's stack on 1 core and on 2, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.2))
    places = range(len(rows))
    axis.bar([x - 0.2 for x in places], [one for _, one, _ in rows], 0.4, label="1 core", color="#a0aec0")
    axis.bar([x + 0.2 for x in places], [two for _, _, two in rows], 0.4, label="2 cores", color="#2b6cb0")
    for x, (_, one, two) in zip(places, rows, strict=True):
        axis.annotate(f"{two / one:.2f}x", (x + 0.2, two), ha="center", va="bottom", fontsize=9)
    axis.set_xticks(list(places), [f"nginx -> {server}" for server, _, _ in rows])
    axis.set_ylim(0, max(two for _, _, two in rows) * 1.15)  # room for the ratios
    axis.set_ylabel("requests/s (median)")
    axis.set_title(
        f"/visits/ on 1 and 2 cores, no config edit ({args.rounds} rounds of {args.duration} s)", fontsize=10
    )
    axis.legend(fontsize=9)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=TEMPLATE / ".cache/bench", help="folder for the chart")
    args = parser.parse_args(argv)
    ensure_matplotlib()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("bench.scaling needs a host with 2 cores or more")
    user, venv = prepare("scaling.py", ["git", "taskset"], range(BLOCK, BLOCK + 30), "scaling benchmark")
    rows: list[tuple[str, float, float]] = []
    sizes: list[list[str]] = []
    held = True
    for app_server in ("uwsgi", "gunicorn"):  # one after the other, in the same block
        baked = bake(user, venv, port_block_start=BLOCK, install_type="pro", app_server=app_server)
        with stack_up(baked) as (stack, _):
            add_visits(stack)
            workers = (stack.project / "etc/env.conf").read_text()
            one, two = [], []
            for number in range(args.rounds):
                order = [("0", one), ("0,1", two)] if number % 2 == 0 else [("0,1", two), ("0", one)]
                for cpus, results in order:
                    pin(user, cpus)
                    results.append(measure(stack, args))
                    print(f"{app_server} round {number + 1} cpus {cpus:<4} {results[-1]:7.0f} req/s", flush=True)
            pin(user, "0-1")
            print(f"{app_server}: the rendered worker count against two per core, on 2 cores", flush=True)
            sizes += [[app_server, *row] for row in workers_side_by_side(stack, args)]
        ratio = statistics.median(b / a for a, b in zip(one, two, strict=True))
        held &= ratio >= TARGET
        processes = [line for line in workers.splitlines() if line.startswith("APP_WORKERS")]
        rows.append((app_server, statistics.median(one), statistics.median(two)))
        print(f"{app_server}: {processes[0] if processes else ''} (empty: from the host)", flush=True)
    print(f"\n/visits/, {args.connections} connections, {args.rounds} rounds of {args.duration} s, wrk unpinned")
    lines = [(server, f"{one:.0f}", f"{two:.0f}", f"{two / one:.2f}") for server, one, two in rows]
    print(table(["app server", "1 core req/s", "2 cores req/s", "2/1"], lines, right=(1, 2, 3)))
    print(f"\n/visits/ on 2 cores, the rendered worker count against {2 * (os.cpu_count() or 1)} (2 per core)")
    print(table(["app server", "workers", "req/s", "p99 ms", "MiB (PSS)"], sizes, right=(1, 2, 3, 4)))
    args.out.mkdir(parents=True, exist_ok=True)
    chart(rows, args.out / "scaling.png", args)
    print(f"wrote {args.out / 'scaling.png'}")
    print(f"target 2 cores >= {TARGET}x 1 core: {'held' if held else 'missed'}")
    return 0 if held else 1


if __name__ == "__main__":
    raise SystemExit(main())
