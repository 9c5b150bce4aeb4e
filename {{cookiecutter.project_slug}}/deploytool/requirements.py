"""requirements.txt and the venv: its hash, whether the venv already has it, pip install.

pip takes about a second to find that there is nothing to do; the venv's own Python, asked
with importlib.metadata, tells in a twentieth of that whether every pinned distribution is
there at its version (and every distribution its extras need, at some version). pip runs
only when something is missing or the file is more than `name[extras]==version` lines.
"""

from __future__ import annotations

import hashlib
import re

from . import proc
from .layout import Install

# name, optional [extras], ==version: what the generated requirements.txt pins.
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[([A-Za-z0-9_,.\s-]+)\])?==([A-Za-z0-9.+!-]+)\s*(?:#.*)?$")

# Run by the venv's Python: exit 0 when every pin (argv: name==version[+extra,extra]) is met.
HAS = """
import re, sys
from importlib.metadata import PackageNotFoundError, requires, version

def has(name, wanted=None):
    try:
        found = version(name)
    except PackageNotFoundError:
        return False
    return wanted is None or found == wanted

for pin in sys.argv[1:]:
    name, _, rest = pin.partition("==")
    wanted, _, extras = rest.partition("+")
    if not has(name, wanted):
        sys.exit(1)
    for extra in filter(None, extras.split(",")):
        for need in requires(name) or []:
            if re.search(r"extra\\s*==\\s*['\\"]" + re.escape(extra) + r"['\\"]", need):
                if not has(re.match(r"[A-Za-z0-9._-]+", need).group()):
                    sys.exit(1)
"""


def digest(install: Install) -> str:
    """sha256 of the checkout's requirements.txt: what a deploy records for its revision."""
    return hashlib.sha256((install.root / "requirements.txt").read_bytes()).hexdigest()


def pins(install: Install) -> list[str] | None:
    """The file's pins as name==version[+extras], or None when a line is anything else."""
    found = []
    for line in (install.root / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if match is None:
            return None
        name, extras, version = match.groups()
        found.append(f"{name}=={version}" + (f"+{extras.replace(' ', '')}" if extras else ""))
    return found


def met(install: Install) -> bool:
    """Whether the venv has what requirements.txt pins (False: let pip see to it)."""
    wanted = pins(install)
    if wanted is None or not install.python.exists():
        return False
    return proc.attempt([install.python, "-c", HAS, *wanted]).returncode == 0


def pip_install(install: Install, what: str) -> str:
    """pip install -r requirements.txt into the venv; its output."""
    argv = [install.python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", "requirements.txt"]
    return proc.run(argv, f"{what}: pip install -r requirements.txt", cwd=install.root, timeout=900)
