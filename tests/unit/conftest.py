"""Unit tests: deploytool's pure functions, its module map, and the golden configs. No
root, no bake, no server: `tests/run.sh tests/unit` runs them in seconds.

deploytool is imported from the template itself (cookiecutter copies it unrendered)."""

from __future__ import annotations

import sys

from support import GENERATED

if str(GENERATED) not in sys.path:
    sys.path.insert(0, str(GENERATED))
