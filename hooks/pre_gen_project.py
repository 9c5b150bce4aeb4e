"""Pre-gen hook: check every answer against one table; one line per bad answer, exit 1.

cookiecutter renders this file with Jinja before running it; the answers come in as a JSON
literal (quotes and backslashes in an answer cannot break the script). Stdlib only: the
generated project does not exist yet, so deploytool cannot be imported here.
"""

from __future__ import annotations

import ipaddress
import json
import keyword
import re
import sys
from collections.abc import Callable

# Mirrors deploytool.ports (BLOCK_SIZE, SLOTS); tests/test_answers.py asserts they agree.
BLOCK_SIZE = 50
INSTALL_TYPES = ("dev", "stage", "pro")
PORT_MIN, PORT_MAX = 49152, 65535  # the dynamic/private range (RFC 6335)
LOWEST_START = -(-PORT_MIN // 10) * 10  # 49160
HIGHEST_START = (PORT_MAX - BLOCK_SIZE + 1) // 10 * 10  # 65480

# fmt: off
# Names a project package must not take: it sits first on sys.path beside these.
REPO_NAMES = {"deploytool", "etc", "bin", "static", "media", "data", "logs", "backups", "env", "tests",
              "manage"}
# Top-level modules of every pinned requirement (requirements.txt and -dev, and what they
# pull in); tests/test_answers.py checks the list against a venv of the pins.
DEPENDENCIES = {"django", "asgiref", "sqlparse", "uwsgi", "uwsgidecorators", "gunicorn", "packaging", "psycopg",
                "psycopg_binary", "psycopg2", "redis", "async_timeout", "pymemcache", "jinja2", "markupsafe",
                "pytest", "_pytest", "py", "pluggy", "iniconfig", "pygments", "pytest_django", "ruff", "fabric",
                "paramiko", "invoke", "cryptography", "bcrypt", "nacl", "_sodium", "cffi", "_cffi_backend",
                "pycparser", "decorator", "deprecated", "wrapt", "typing_extensions", "pip", "setuptools",
                "pkg_resources", "_distutils_hack", "debian", "tzdata", "celery", "kombu", "billiard", "vine",
                "amqp", "click", "click_didyoumean", "click_plugins", "click_repl", "dateutil", "prompt_toolkit",
                "six", "tzlocal", "wcwidth"}
# Accounts the distribution or a service already owns; services never run as root.
SYSTEM_USERS = {"root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
                "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "_apt", "messagebus", "sshd",
                "postgres", "redis", "memcache", "nginx", "supervisor", "systemd-network", "systemd-resolve",
                "systemd-timesync", "systemd-coredump"}
# fmt: on
RESERVED_SLUGS = set(sys.stdlib_module_names) | {"test"} | REPO_NAMES | DEPENDENCIES  # the list omits test

LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"  # RFC 1123, lowercase
# The longest site name an install gets is "stage.<domain>"; it is the certificate's common
# name, which X.509 limits to 64 characters.
CN_MAX = 64
LONGEST_PREFIX = len("stage.")
# nginx's upstream zone (64k, site.conf) holds this many servers with room to spare: nginx
# 1.22 started with 60 and failed with 70 ("no memory in upstream zone").
MAX_UPSTREAMS = 32
PRIVATE_RULE = "a private unicast IPv4 address (10/8, 172.16/12, 192.168/16) or a host name other than localhost"
UPSTREAM = re.compile(r"(?P<host>[^\s:,]+)(?::(?P<port>[0-9]+))?(?:\s+weight=(?P<weight>[0-9]+))?")

Check = Callable[[object], bool]


def matches(pattern: str) -> Check:
    return lambda value: isinstance(value, str) and re.fullmatch(pattern, value) is not None


def is_email_or_empty(value: object) -> bool:
    return value == "" or matches(r"[^@\s]+@[^@\s]+\.[^@\s]+")(value)


def as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and re.fullmatch(r"[1-9][0-9]*", value) else None


def counts(low: int, high: int) -> Check:
    """A count of backups to keep: a whole number (or its digits, as typed) in low..high."""

    def check(value: object) -> bool:
        number = 0 if value in (0, "0") else as_int(value)
        return number is not None and low <= number <= high

    return check


def is_hostname(value: str, min_labels: int = 1) -> bool:
    labels = value.split(".")
    return (
        len(value) <= 253
        and len(labels) >= min_labels
        and not labels[-1].isdigit()
        and all(re.fullmatch(LABEL, label) for label in labels)
    )


def is_identifier(value: object) -> bool:
    return matches(r"[a-z][a-z0-9_]*")(value) and not keyword.iskeyword(str(value))


def is_domain(value: object) -> bool:
    return isinstance(value, str) and is_hostname(value, min_labels=2)


def is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def is_block_start(value: object) -> bool:
    start = as_int(value)
    return start is not None and start % 10 == 0 and LOWEST_START <= start <= HIGHEST_START


def is_private_ipv4(value: str) -> bool:
    address = ipaddress.IPv4Address(value)
    return address.is_private and not (
        address.is_loopback
        or address.is_unspecified
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
    )


def is_upstream(item: re.Match[str] | None) -> bool:
    if item is None:
        return False
    host = item["host"]
    if is_ipv4(host):
        if not is_private_ipv4(host):
            return False
    elif not is_hostname(host) or re.fullmatch(r"[0-9.]+", host) or host == "localhost" or host.endswith(".localhost"):
        return False
    port, weight = item["port"], item["weight"]
    return (port is None or 0 < (as_int(port) or 0) <= 65535) and (weight is None or bool(as_int(weight)))


def are_upstreams(value: object) -> bool:
    if not isinstance(value, str) or value == "":
        return value == ""
    items = [UPSTREAM.fullmatch(item.strip()) for item in value.split(",")]
    servers = [(item["host"], item["port"]) for item in items if item]
    return all(is_upstream(item) for item in items) and len(set(servers)) == len(servers)


def few_upstreams(value: object) -> bool:
    return not isinstance(value, str) or len([item for item in value.split(",") if item.strip()]) <= MAX_UPSTREAMS


def is_plain_text(value: object) -> bool:
    """No control characters (a newline ends a comment) and no template markup."""
    # \x7b and \x7d are the braces: written out, cookiecutter's Jinja would read this line.
    return isinstance(value, str) and not re.search(r"[\x00-\x1f\x7f]|\x7b[\x7b%#]|[\x7d%#]\x7d", value)


def choice(answer: str, *choices: str) -> tuple[str, Check, str]:
    return answer, (lambda value: value in choices), "must be one of " + ", ".join(choices)


# (answer, check, rule): the first rule an answer breaks is reported, as "answer=value: rule".
# fmt: off
RULES: tuple[tuple[str, Check, str], ...] = (
    ("project_name", lambda value: isinstance(value, str) and value.strip() != "", "must not be empty"),
    ("project_name", is_plain_text,
     "must be one line of plain text: no control characters (newline, tab) and no template markup (a brace "
     "followed by a brace, % or #)"),
    ("project_slug", is_identifier,
     "must be a Python identifier of a-z, 0-9 and '_' that starts with a letter and is not a keyword"),
    ("project_slug", lambda value: value not in RESERVED_SLUGS,
     ("would shadow a module the project imports (Python's standard library, Django and its dependencies) "
      "or a top-level name of the generated repo (deploytool, etc, bin, ...); choose another slug")),
    ("domain", is_domain,
     ("must be a lowercase host name: two or more dot-separated labels of a-z, 0-9 and '-' (no '-' at "
      "either end, 63 characters each, 253 in all); no scheme, port, path, trailing dot or IP address")),
    ("domain", lambda value: len(str(value)) + LONGEST_PREFIX <= CN_MAX,
     (f"must be at most {CN_MAX - LONGEST_PREFIX} characters: the stage install's name, stage.<domain>, is "
      f"the certificate's common name, which holds {CN_MAX}")),
    ("user", matches(r"[a-z_][a-z0-9_-]{0,31}"),
     "must be a Unix user name: a-z or '_', then up to 31 of a-z, 0-9, '_' and '-'"),
    ("user", lambda value: value not in SYSTEM_USERS,
     "is a system account; the installs need a user of their own (services never run as root)"),
    choice("install_type", *INSTALL_TYPES),
    ("port_block_start", is_block_start,
     (f"the block of {BLOCK_SIZE} ports must start at a multiple of 10 inside {PORT_MIN}-{PORT_MAX} "
      f"(lowest {LOWEST_START}, highest {HIGHEST_START})")),
    ("python_version", matches(r"3\.[1-9][0-9]"),
     "must be 3.X with X at least 10 (Django 5.2 needs Python 3.10 or later), e.g. 3.11"),
    choice("app_server", "uwsgi", "gunicorn"),
    choice("process_manager", "systemd", "supervisor"),
    choice("database", "sqlite", "postgresql"),
    choice("cache", "none", "redis", "memcached"),
    choice("worker", "none", "celery"),
    ("admin_basic_auth", lambda value: isinstance(value, bool), "must be a boolean: true or false"),
    ("hsts_subdomains", lambda value: isinstance(value, bool), "must be a boolean: true or false"),
    ("certbot_email", is_email_or_empty, "must be empty or an e-mail address (one '@', no spaces)"),
    ("admin_email", is_email_or_empty, "must be empty or an e-mail address (one '@', no spaces)"),
    ("app_upstreams", are_upstreams,
     ("must be empty or comma-separated 'host[:port][ weight=N]' items: host " + PRIVATE_RULE + " (the app "
      "servers have no authentication: never public, loopback or 0.0.0.0), port 1-65535, N at least 1, "
      "no host:port twice")),
    ("app_upstreams", few_upstreams,
     f"names more than {MAX_UPSTREAMS} app servers, which nginx's shared upstream zone is sized for"),
    choice("balancing", "round_robin", "least_conn", "ip_hash"),
    ("backup_keep_daily", counts(1, 3660), "must be a whole number of days from 1 to 3660"),
    ("backup_keep_weekly", counts(0, 520), "must be a whole number of weeks from 0 to 520"),
    ("backup_keep_monthly", counts(0, 120), "must be a whole number of months from 0 to 120"),
)

# Rules between answers, checked once each answer is valid on its own: (answer, check of
# all the answers, rule).
COMBINATIONS: tuple[tuple[str, Callable[[dict[str, object]], bool], str], ...] = (
    ("worker", lambda answers: answers.get("worker") != "celery" or answers.get("cache") == "redis",
     "celery needs cache=redis: the install's own Redis is the worker's broker and result store"),
)
# fmt: on


def shown(value: object) -> str:
    """The value as typed where that reads unambiguously, else as JSON (quotes, spaces, booleans)."""
    if isinstance(value, str) and re.fullmatch(r"[\w.:@/+-]+", value):
        return value
    return json.dumps(value, ensure_ascii=False)


def errors(answers: dict[str, object]) -> list[str]:
    found: dict[str, str] = {}
    for answer, check, rule in RULES:
        value = answers.get(answer)
        if answer not in found and not check(value):
            found[answer] = f"{answer}={shown(value)}: {rule}"
    for answer, combined, rule in COMBINATIONS:
        if not found and not combined(answers):
            found[answer] = f"{answer}={shown(answers.get(answer))}: {rule}"
    return list(found.values())


def main() -> int:
    # tojson escapes every ' (as \u0027), so nothing an answer holds can close this literal.
    answers = json.loads(r'''{{ cookiecutter | tojson }}''')  # fmt: skip
    lines = errors(answers)
    for line in lines:
        print(line, file=sys.stderr)
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
