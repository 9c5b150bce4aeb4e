"""Hosts for real on one machine: network namespaces this process makes (ip netns, a
bridge, veth pairs) on a private /24 that exists only inside them, one install per host run
as the project user, and an sshd per host with keys made here."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from .run import GIT, program, run

LB_ADDRESS = "10.213.0.10"  # the front nginx, and the operator's checkout that deploys
HOSTS = {"web1": "10.213.0.11", "web2": "10.213.0.12"}  # app servers, their nginx, sshd
ADDRESSES = {**HOSTS, "lb": LB_ADDRESS}  # every host with an sshd (lb: the front, in fleet.ini too)


# TCP connection attempts from one source address ("" = the kernel's choice), one line per
# target: "address:port state".
CONNECT = """
import socket, sys
source, targets = sys.argv[1], sys.argv[2:]
for target in targets:
    address, port = target.rsplit(":", 1)
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
        probe.settimeout(3)
        if source:
            probe.bind((source, 0))
        try:
            probe.connect((address, int(port)))
            print(target, "connected")
        except ConnectionRefusedError:
            print(target, "refused")
        except OSError as error:
            print(target, type(error).__name__)
"""


# ---- the network: namespaces, a bridge, veth pairs -------------------------------------------
class Network:
    """lb (the bridge's end) and the other hosts on one private /24, in namespaces only this
    module made: by default lb, web1 and web2."""

    def __init__(self, hosts: dict[str, str] | None = None, lb: str = LB_ADDRESS, tag: str = "djlf") -> None:
        self.ip = program("ip", "iproute2")
        self.hosts, self.lb = hosts or HOSTS, lb
        tag = f"{tag}{os.getpid()}"
        self.names = {"lb": f"{tag}-lb", **{host: f"{tag}-{host}" for host in self.hosts}}
        self.made: list[str] = []

    def _ip(self, *args: str) -> None:
        run([self.ip, *args])

    def create(self) -> None:
        for name in self.names.values():
            self._ip("netns", "add", name)
            self.made.append(name)
            self._ip("-n", name, "link", "set", "lo", "up")
        lb = self.names["lb"]
        self._ip("-n", lb, "link", "add", "br0", "type", "bridge")
        self._ip("-n", lb, "addr", "add", f"{self.lb}/24", "dev", "br0")
        self._ip("-n", lb, "link", "set", "br0", "up")
        for host, address in self.hosts.items():
            ns, port = self.names[host], f"v{host}"
            # Both ends are made inside namespaces: nothing appears in this machine's own.
            self._ip("-n", lb, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._ip("-n", lb, "link", "set", port, "master", "br0")
            self._ip("-n", lb, "link", "set", port, "up")
            self._ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            self._ip("-n", ns, "link", "set", "eth0", "up")

    def address(self, host: str) -> str:
        return self.lb if host == "lb" else self.hosts[host]

    def ip_in(self, where: str, *args: str) -> None:
        """`ip ARGS` in the namespace ``where`` (an address added for a test, say)."""
        self._ip("-n", self.names[where], *args)

    def connect(self, where: str, address: str, port: int, source: str = "") -> str:
        """A TCP connection attempt from the namespace ``where`` (from ``source`` when given):
        "connected", "refused", or the error's name (a timeout: something dropped it)."""
        return self.sweep(where, [f"{address}:{port}"], source)[f"{address}:{port}"]

    def sweep(self, where: str, targets: list[str], source: str = "") -> dict[str, str]:
        """``connect`` to each "address:port" of ``targets`` in turn, in one process."""
        argv = self.exec(where, "python3", "-c", CONNECT, source, *targets)
        return dict(line.split() for line in run(argv).stdout.splitlines())

    def exec(self, where: str, *argv: str | Path) -> list[str]:
        return [self.ip, "netns", "exec", self.names[where], *map(str, argv)]

    def remove(self) -> list[int]:
        """Delete the namespaces; processes still in them (started here) are killed first."""
        killed = []
        for name in self.made:
            pids = subprocess.run([self.ip, "netns", "pids", name], capture_output=True, text=True).stdout.split()
            for pid in map(int, pids):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
        for name in self.made:
            subprocess.run([self.ip, "netns", "del", name], capture_output=True)
        self.made = []
        return killed


# ---- a host and its install --------------------------------------------------------------------
@dataclass
class Node:
    """A host (namespace) with one install of the project, run as the project user."""

    name: str
    network: Network
    root: Path
    user: str

    def run(self, *argv: str | Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        command = self.network.exec(self.name, "runuser", "-u", self.user, "--", *argv)
        proc = subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, (
                f"{self.name}: {' '.join(command)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def deploytool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(self.root / "bin/deploytool", *args, check=check)

    def popen_deploytool(self, *args: str) -> subprocess.Popen[str]:
        argv = self.network.exec(self.name, "runuser", "-u", self.user, "--", self.root / "env3.11/bin/python")
        return subprocess.Popen(
            [*argv, "-m", "deploytool", *args],
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def git(self, *args: str) -> str:
        return self.run(*GIT, *args).stdout.strip()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    @property
    def env(self) -> dict[str, str]:
        lines = (self.root / "etc/env.conf").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))

    @property
    def rules(self) -> Path:
        """The install's nftables rules, as `deploytool render` wrote them."""
        return self.root / "etc/nftables" / f"{self.env['SITE']}.nft"

    @property
    def table(self) -> str:
        """The name of the install's nftables table, as its rules make it."""
        match = re.search(r"^table inet (\w+) \{", self.rules.read_text(), re.M)
        assert match, f"no table in {self.rules}"
        return match.group(1)

    def nft(self, *args: str | Path) -> None:
        """nft ARGS in this host's namespace, as root (the rules are the kernel's)."""
        run(self.network.exec(self.name, program("nft", "nftables"), *args))

    def app_pids(self) -> list[int]:
        """The app server's master and workers."""
        out = self.run(self.root / "bin/appctl.sh", "status").stdout
        match = re.search(r"pid (\d+)", out)
        assert match, out
        master = int(match.group(1))
        children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
        return [master, *map(int, children)]

    def listening(self) -> list[tuple[str, int]]:
        """(address, port) of the listening TCP sockets in this host's namespace."""
        found = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            text = subprocess.run(self.network.exec(self.name, "cat", table), capture_output=True, text=True).stdout
            for row in text.splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A":
                    address, port = fields[1].rsplit(":", 1)
                    raw = bytes.fromhex(address)
                    shown = socket.inet_ntop(socket.AF_INET, raw[::-1]) if len(raw) == 4 else address
                    found.append((shown, int(port, 16)))
        return found


# ---- SSH: keys, sshd per host, known_hosts, the client's ssh_config -------------------------------
SSHD_CONFIG = """# sshd of the test host {host}: its own address, keys and log; nothing else.
ListenAddress {address}:22
HostKey {key}
PidFile none
# The client key the test made, in a file under the temp folder: StrictModes would refuse
# it there (its parent folders are not root's), and the file is the test's own.
AuthorizedKeysFile {authorized}
StrictModes no
AllowUsers {user}
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
# PAM: the project user has a locked password (useradd), which only PAM lets keys past.
UsePAM yes
UseDNS no
# As Debian's sshd_config: file transfers (a new host gets the data host's settings so).
Subsystem sftp internal-sftp
"""


def make_ssh(
    fleet_base: Path, user: str, addresses: dict[str, str] | None = None
) -> tuple[Path, dict[str, Path], Path]:
    """Client key (the user's), host keys (root's), known_hosts and ssh_config (the user's),
    for the hosts given (default the fleet's: lb, web1, web2)."""
    addresses = addresses or ADDRESSES
    keygen = program("ssh-keygen", "openssh-client")
    ssh = fleet_base / "ssh"
    ssh.mkdir()
    run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "fleet test", "-f", ssh / "id_ed25519"])
    host_keys = {}
    for host in addresses:
        folder = fleet_base / f"sshd-{host}"
        folder.mkdir(mode=0o700)
        run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", host, "-f", folder / "host_ed25519"])
        host_keys[host] = folder / "host_ed25519"
    # known_hosts from the keys themselves: no keyscan, no trust on first use.
    lines = [
        f"{addresses[host]} {' '.join(key.with_suffix('.pub').read_text().split()[:2])}"
        for host, key in host_keys.items()
    ]
    (ssh / "known_hosts").write_text("\n".join(lines) + "\n")
    (ssh / "authorized_keys").write_text((ssh / "id_ed25519.pub").read_text())
    (ssh / "config").write_text(
        "Host *\n"
        f"    IdentityFile {ssh / 'id_ed25519'}\n"
        f"    UserKnownHostsFile {ssh / 'known_hosts'}\n"
        "    GlobalKnownHostsFile /dev/null\n"
    )
    run(["chown", "-R", f"{user}:{user}", ssh])
    return ssh, host_keys, ssh / "authorized_keys"


@contextmanager
def sshd(network: Network, host: str, key: Path, authorized: Path, user: str) -> Iterator[None]:
    folder = key.parent
    config = folder / "sshd_config"
    address = network.address(host)
    config.write_text(SSHD_CONFIG.format(host=host, address=address, key=key, authorized=authorized, user=user))
    binary = program("sshd", "openssh-server")
    run([binary, "-t", "-f", config])  # the config is valid before it runs
    log = open(folder / "sshd.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(network.exec(host, binary, "-D", "-e", "-f", config), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while f"Server listening on {address} port 22" not in (folder / "sshd.log").read_text():
            assert server.poll() is None, f"sshd of {host} exited: {(folder / 'sshd.log').read_text()}"
            assert time.monotonic() < deadline, f"sshd of {host} does not listen: {(folder / 'sshd.log').read_text()}"
            time.sleep(0.1)
        yield
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
