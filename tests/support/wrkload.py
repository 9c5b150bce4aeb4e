"""Load with wrk while something happens (a reload, a deploy, a log rotation), every answer
counted: what the lifecycle and fleet tests assert, and what bench/benchmark.py reports."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# wrk's own count lets 3xx pass: this script counts every status that is not 200 as a
# failure, and the 200s by the revision /health/ names ("ok <revision>"; "?" elsewhere).
COUNT_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; other = 0; codes = ""; revs = {} end
function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    local rev = string.match(body, "^ok (%x+)") or "?"
    revs[rev] = (revs[rev] or 0) + 1
  else
    other = other + 1
    if #codes < 100 then codes = codes .. status .. " " end
  end
end
function done(summary, latency, requests)
  local o, b, c, all = 0, 0, "", {}
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); b = b + t:get("other"); c = c .. t:get("codes")
    for rev, n in pairs(t:get("revs")) do all[rev] = (all[rev] or 0) + n end
  end
  io.write(string.format("statuses: 200=%d other=%d codes=%s\\n", o, b, c))
  for rev, n in pairs(all) do io.write(string.format("revision: %s %d\\n", rev, n)) end
end
"""
SOCKET_ERRORS = ("connect", "read", "write", "timeout")


@dataclass
class Seen:
    """What wrk saw: every response counted, every socket error counted."""

    output: str = ""
    requests: int = 0
    seconds: float = 0.0
    ok: int = 0
    other: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)  # 200s by the revision they named

    def parse(self, output: str) -> None:
        self.output = output
        # wrk gives the duration in ms, s or m (a run past ~50 s reads "0.90m")
        done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", output)
        statuses = re.search(r"statuses: 200=(\d+) other=(\d+)", output)
        assert done and statuses, f"wrk printed no summary:\n{output}"
        self.requests = int(done.group(1))
        self.seconds = float(done.group(2)) * {"ms": 1e-3, "s": 1.0, "m": 60.0}.get(done.group(3), 1.0)
        self.ok, self.other = int(statuses.group(1)), int(statuses.group(2))
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
        counts = [int(value) for value in errors.groups()] if errors else [0] * len(SOCKET_ERRORS)
        self.socket_errors = dict(zip(SOCKET_ERRORS, counts, strict=True))
        self.revisions = {rev: int(n) for rev, n in re.findall(r"^revision: (\S+) (\d+)$", output, re.M)}

    @property
    def failed(self) -> int:
        """Answers that were not 200, and requests lost to a socket error."""
        return self.other + sum(self.socket_errors.values())

    def assert_nothing_failed(self, least: int = 100) -> None:
        assert self.requests >= least, f"too little load to tell ({self.requests} requests):\n{self.output}"
        assert self.other == 0, f"{self.other} of {self.requests} answers were not 200:\n{self.output}"
        assert not any(self.socket_errors.values()), f"socket errors {self.socket_errors}:\n{self.output}"
        assert self.ok == self.requests, self.output

    def share(self, revision: str) -> float:
        """The part of the 200s that named ``revision``."""
        return self.revisions.get(revision[:12], 0) / max(self.ok, 1)


def wrk_argv(
    wrk: str, url: str, host: str, script: Path, seconds: int, connections: int = 8, headers: Sequence[str] = ()
) -> list[str]:
    """wrk with COUNT_LUA (written to ``script``) on ``url``, sending ``host`` as Host (and
    ``headers``)."""
    script.write_text(COUNT_LUA)
    sent = [arg for header in [f"Host: {host}", *headers] for arg in ("-H", header)]
    return [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), *sent, url]


@contextmanager
def under_load(argv: Sequence[str | Path], settle: float = 1.5) -> Iterator[Seen]:
    """wrk (``argv``, a wrk_argv, possibly wrapped) while the body runs, with ``settle``
    seconds of load before and after it; stopped with SIGINT, which makes it print its
    summary. The result is filled in when the block ends."""
    seen = Seen()
    wrk = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(settle)
        assert wrk.poll() is None, f"wrk exited early: {wrk.communicate()[0]}"
        yield seen
        time.sleep(settle)
    finally:
        wrk.send_signal(signal.SIGINT)
        try:
            output, _ = wrk.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            wrk.kill()
            output, _ = wrk.communicate()
    seen.parse(output)
