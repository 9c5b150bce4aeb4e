"""What the tests (and bench/) are made of: running and waiting (run), baked projects and
the project user (bake), running stacks (stack), the answers and port blocks (matrix).
Heavier parts are imported by name: probes, unitsandbox, wrkload, netns, pebble."""

from .bake import (
    GENERATED,
    PROJECT_USER,
    SYSTEM_PYTHON,
    TEMPLATE,
    bake_for_user,
    ensure_project_user,
    ensure_project_venv,
    local_settings,
    pinned_requirements,
    postgresql_for,
    root_copy,
)
from .matrix import BLOCKS, LIFECYCLE, MATRIX, STACKS
from .run import GIT, poll_until, port_free, program, run, tool, wait_until
from .stack import Stack, running_stack

__all__ = [
    "BLOCKS",
    "GENERATED",
    "GIT",
    "LIFECYCLE",
    "MATRIX",
    "PROJECT_USER",
    "STACKS",
    "SYSTEM_PYTHON",
    "TEMPLATE",
    "Stack",
    "bake_for_user",
    "ensure_project_user",
    "ensure_project_venv",
    "local_settings",
    "pinned_requirements",
    "poll_until",
    "port_free",
    "postgresql_for",
    "program",
    "root_copy",
    "run",
    "running_stack",
    "tool",
    "wait_until",
]
