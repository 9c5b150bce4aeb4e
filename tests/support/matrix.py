"""The answers the tests bake and run stacks with, and the port block each test module owns.

Test modules run side by side on one machine: each stack owns a block of its own, so no
two tests ever fight over a port (the benchmark's blocks are listed too)."""

from __future__ import annotations

from typing import Any

# Every value of every choice at least once, and the pairs that interact: each app server
# under each process manager (stop/reload signals), each app server in a production
# install (check --deploy), each database with each app server.
MATRIX: dict[str, dict[str, Any]] = {
    "default": {},
    "stage-gunicorn-supervisor-postgresql-redis": {
        "install_type": "stage",
        "app_server": "gunicorn",
        "process_manager": "supervisor",
        "database": "postgresql",
        "cache": "redis",
        "worker": "celery",
        "admin_basic_auth": False,
        "balancing": "least_conn",
        "app_upstreams": "10.0.0.11, 10.0.0.12:60011 weight=2",
    },
    "pro-uwsgi-supervisor-memcached": {
        "install_type": "pro",
        "app_server": "uwsgi",
        "process_manager": "supervisor",
        "cache": "memcached",
        "balancing": "ip_hash",
        "certbot_email": "ops@example.org",
    },
    "pro-gunicorn-systemd-postgresql": {
        "install_type": "pro",
        "app_server": "gunicorn",
        "process_manager": "systemd",
        "database": "postgresql",
        "app_upstreams": "192.168.10.1 weight=3, 192.168.10.2",
        "hsts_subdomains": True,
    },
    "stage-uwsgi-systemd-memcached": {
        "install_type": "stage",
        "app_server": "uwsgi",
        "process_manager": "systemd",
        "cache": "memcached",
    },
    "dev-uwsgi-systemd-redis-celery": {
        "cache": "redis",
        "worker": "celery",
    },
    "dev-gunicorn-supervisor-redis": {
        "install_type": "dev",
        "app_server": "gunicorn",
        "process_manager": "supervisor",
        "cache": "redis",
        "admin_basic_auth": False,
        "python_version": "3.11",
    },
}

# Bakes that nginx balances over other hosts, or without basic auth, keep the single-host
# defaults when they run as a stack: these answers are about the bake, not the stack.
BAKE_ONLY = ("app_upstreams", "balancing", "admin_basic_auth")


def served(entry: str) -> dict[str, Any]:
    return {key: value for key, value in MATRIX[entry].items() if key not in BAKE_ONLY}


# Each app server under each process manager's semantics (systemd's is run by
# bin/appctl.sh in the sandbox), each database and cache, dev and production settings.
STACKS: dict[str, dict[str, Any]] = {
    "dev-uwsgi-systemd-sqlite": served("default"),
    "stage-gunicorn-supervisor-postgresql-redis": served("stage-gunicorn-supervisor-postgresql-redis"),
    "pro-uwsgi-supervisor-sqlite-memcached": served("pro-uwsgi-supervisor-memcached"),
}

# The stacks the lifecycle tests deploy to: the default, and the other app server under
# the other process manager (the pairs whose stop and reload signals differ).
LIFECYCLE: dict[str, dict[str, Any]] = {
    "dev-uwsgi-systemd": {"cache": "redis", "worker": "celery"},  # the worker by bin/workerctl.sh alone
    "stage-gunicorn-supervisor": {
        "install_type": "stage",
        "app_server": "gunicorn",
        "process_manager": "supervisor",
        "cache": "redis",
        "worker": "celery",  # a deploy restarts it while a task runs
    },
}

# Who owns which block of 50 ports (dev +0, stage +10, pro +20, +30..+49 spare).
BLOCKS = {
    "bake": 60000,  # bakes that never start a server; test_appctl's own at +30 and +40
    "stack": 62000,
    "install": 62050,
    "trust": 62150,
    "cert": 63000,  # pebble on the spare 63040-63049
    "lifecycle": 64000,  # dev and stage; test_cruft runs the pro install of the same block
    "bench": 64500,  # and 64550: bench/benchmark.py's two projects
    "security": 64600,  # bench/security.py; 64650: bench/backups.py; 64700: bench/sqlite.py; 64750: bench/scaling.py
    "fleet": 64800,  # inside the fleet's namespaces; 64850 a second project for ports --check
    "shared": 64900,  # inside test_shared_data's namespaces
}
