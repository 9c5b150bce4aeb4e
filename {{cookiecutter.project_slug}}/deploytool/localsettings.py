"""Values of settings_local.py that deploytool needs (the database's host and port), read
without running the file.

settings_local.py is the project user's: running it as root would run the user's code as
root, and even as the user it may import the whole project. So it is parsed: the
top-level assignments whose values are literals are read with ast.literal_eval, anything
else is left alone. What deploytool then puts into a config (a unit's command line) is
checked against a strict rule first: a value is data, never a line of a unit file.
"""

from __future__ import annotations

import ast
import ipaddress
import re
from pathlib import Path
from typing import Any

from .errors import DeployError
from .files import read_user_file

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")


def literals(path: Path, uid: int | None = None) -> dict[str, Any]:
    """Top-level NAME = <literal> assignments; dicts keep only their literal entries."""
    source = read_user_file(path, uid)
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as error:
        raise DeployError(f"{path} does not parse (line {error.lineno}: {error.msg}): fix it, then run again") from None
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = _literal(node.value)
            if value is not _NOT_LITERAL:
                found[node.targets[0].id] = value
    return found


_NOT_LITERAL = object()


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Dict):
        result = {}
        for key, value in zip(node.keys, node.values, strict=True):
            k, v = _literal(key) if key is not None else _NOT_LITERAL, _literal(value)
            if k is not _NOT_LITERAL and v is not _NOT_LITERAL:
                result[k] = v
        return result
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def database(path: Path, uid: int | None = None) -> dict[str, str]:
    """DATABASES["default"] of a PostgreSQL install: HOST an IP address, PORT a port
    number, NAME and USER plain names; refused with the rule otherwise."""
    try:
        db = literals(path, uid)["DATABASES"]["default"]
    except (KeyError, TypeError):
        raise DeployError(f"{path} has no literal DATABASES['default']: write it as a plain dict") from None
    values = {key: str(db.get(key, "")) for key in ("HOST", "PORT", "NAME", "USER", "PASSWORD")}
    try:
        ipaddress.ip_address(values["HOST"])
    except ValueError:
        raise DeployError(f"DATABASES HOST {values['HOST']!r} in {path}: must be an IP address") from None
    if not values["PORT"].isdigit() or not 1 <= int(values["PORT"]) <= 65535:
        raise DeployError(f"DATABASES PORT {values['PORT']!r} in {path}: must be a port number (1-65535)")
    for key in ("NAME", "USER"):
        if not NAME.match(values[key]):
            raise DeployError(f"DATABASES {key} {values[key]!r} in {path}: letters, digits, _ . - only (max 63)")
    return values


def redis_password(path: Path, uid: int | None = None) -> str:
    """REDIS_PASSWORD of an install whose Redis is the data host's, shared by the app hosts."""
    return shared_password(path, "REDIS_PASSWORD", "the data host's Redis", uid)


def media_password(path: Path, uid: int | None = None) -> str:
    """MEDIA_PASSWORD of an install whose uploads are in the data host's media store."""
    return shared_password(path, "MEDIA_PASSWORD", "the data host's media store", uid)


def shared_password(path: Path, name: str, server: str, uid: int | None = None) -> str:
    """A password the data host's server takes from the app hosts: refused when missing or
    too short to stand on a private network."""
    password = literals(path, uid).get(name)
    if not isinstance(password, str) or len(password) < 16:
        raise DeployError(
            f"{path} has no {name} of 16 characters or more ({server} takes connections from the "
            "app hosts): copy the data host's settings_local.py here"
        )
    return password
