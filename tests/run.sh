#!/usr/bin/env bash
# Runs all of dj-layout's tests, installing first whatever they need that is missing:
# Debian packages (as root, with apt-get) and the Python tools (into .venv/).
# Arguments go to pytest, e.g. `tests/run.sh -k bake -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real programs the tests start or run; Debian package names.
packages=(
  nginx            # nginx -t and the served stack
  logrotate        # logrotate -d / -f
  systemd          # systemd-analyze verify, security, systemd-tmpfiles
  supervisor       # supervisord for the supervisor variant
  openssl          # throwaway and self-signed certificates
  git              # cruft and deploy work on git checkouts
  rsync            # deploytool backup and restore copy media/ with it
  nftables         # nft -c on the rendered rules (check), and the rules loaded in the fleet's hosts
  python3-venv     # the project user's virtualenv, from Debian's Python
  python3-dev      # uWSGI compiles against it
  gcc              # ditto
  postgresql       # the install's own cluster, and a throwaway one for bakes
  redis-server     # the install's own Redis
  memcached        # the install's own memcached
  python3-seccomp  # the unit's system call filter, rebuilt by a test
  certbot          # deploytool cert and the renewal, for real
  pebble           # Let's Encrypt's test CA (with pebble-challtestsrv) on loopback
  openssh-server   # sshd: the servers a rolling deploy reaches with Fabric (test_fleet)
  iproute2         # ip netns/veth: those servers' private network, inside the test only
  wrk              # load through nginx during deploys, reloads and log rotation
  debootstrap      # a Debian 12 server tree, booted with systemd as PID 1 (test_server)
  systemd-container  # systemd-nspawn boots it
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
  if ((EUID != 0)); then
    echo "tests/run.sh: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The template's own Python tools, pinned in pyproject.toml, in a venv of their own.
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python - <<'PY' > .venv/test-requirements.txt
import tomllib
with open("pyproject.toml", "rb") as handle:
    print("\n".join(tomllib.load(handle)["project"]["optional-dependencies"]["test"]))
PY
.venv/bin/python -m pip install -q --disable-pip-version-check -r .venv/test-requirements.txt

exec .venv/bin/python -m pytest "$@"
