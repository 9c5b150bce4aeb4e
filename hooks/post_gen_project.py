"""Thin post-gen hook: prune what the answers exclude, then let deploytool init the install.

Deterministic for tracked files and touches nothing outside the project folder: cruft
re-runs it in temporary folders on every update.
"""

import shutil
import subprocess
import sys
from pathlib import Path

ANSWERS = {
    "app_server": "{{ cookiecutter.app_server }}",
    "process_manager": "{{ cookiecutter.process_manager }}",
    "database": "{{ cookiecutter.database }}",
    "cache": "{{ cookiecutter.cache }}",
    "worker": "{{ cookiecutter.worker }}",
}
INSTALL_TYPE = "{{ cookiecutter.install_type }}"

# answer -> value -> files of the generated repo that value does not use.
PRUNE = {
    "app_server": {
        "uwsgi": ["etc/templates/gunicorn.conf.py.j2"],
        "gunicorn": ["etc/templates/uwsgi.yaml.j2"],
    },
    "process_manager": {
        "systemd": ["etc/templates/supervisor"],
        "supervisor": ["etc/templates/systemd"],
    },
    # The dedicated servers' systemd units (supervisor's services.conf renders what is chosen).
    "database": {
        "sqlite": ["etc/templates/systemd/postgresql.service.j2", "etc/templates/postgresql"],
        "postgresql": [],
    },
    "cache": {
        "none": ["etc/templates/systemd/redis.service.j2", "etc/templates/systemd/memcached.service.j2"],
        "redis": ["etc/templates/systemd/memcached.service.j2"],
        "memcached": ["etc/templates/systemd/redis.service.j2"],
    },
    "worker": {
        "none": [
            "{{ cookiecutter.project_slug }}/celery.py",
            "{{ cookiecutter.project_slug }}/tasks.py",
            "bin/workerctl.sh",
            "etc/templates/systemd/worker.service.j2",
            "etc/templates/supervisor/worker.conf.j2",
        ],
        "celery": [],
    },
}


def prune() -> None:
    for answer, value in ANSWERS.items():
        for name in PRUNE[answer][value]:
            path = Path(name)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)  # inside a folder another answer pruned


def main() -> int:
    prune()
    # -B: no __pycache__ in the project. cruft runs this hook in two temporary renders on
    # every update; their .pyc files differ (source mtimes) and would enter its diff.
    init = [sys.executable, "-B", "-m", "deploytool", "init", "--install-type", INSTALL_TYPE]
    return subprocess.run(init, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
