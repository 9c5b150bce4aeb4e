"""The pre-gen hook refuses bad answers: one line per error on stderr, exit 1, nothing left behind."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import generate_context
from cookiecutter.hooks import run_script_with_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config

TEMPLATE = Path(__file__).resolve().parent.parent
HOOK = TEMPLATE / "hooks" / "pre_gen_project.py"
PORTS = TEMPLATE / "{{cookiecutter.project_slug}}" / "deploytool" / "ports.py"
PORT_RULE = "the block of 50 ports must start at a multiple of 10 inside 49152-65535 (lowest 49160, highest 65480)"


def load(path: Path, name: str) -> ModuleType:
    """Import one file by path: no sys.path entry, no clash with a baked project's deploytool."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = load(HOOK, "dj_layout_pre_gen_project")  # its Jinja literal sits inside main(), never run here
ports = load(PORTS, "dj_layout_template_ports")


def answers(**extra: Any) -> dict[str, Any]:
    """The context cookiecutter hands the hook for these answers, private keys included."""
    context = generate_context(context_file=str(TEMPLATE / "cookiecutter.json"), extra_context=extra)
    rendered = prompt_for_config(context, no_input=True)
    return {**rendered, "_template": str(TEMPLATE), "_output_dir": "out", "_repo_dir": str(TEMPLATE)}


def run_hook(cwd: Path, capfd: pytest.CaptureFixture[str], context: dict[str, Any]) -> tuple[bool, list[str]]:
    """Render and run the hook the way cookiecutter (and cruft) do; its stderr lines."""
    try:
        run_script_with_context(HOOK, cwd, {"cookiecutter": context})
        passed = True
    except FailedHookException:
        passed = False
    return passed, capfd.readouterr().err.splitlines()


def leftovers(tmp_path: Path) -> list[Path]:
    """Everything under the cookies fixture's output folders (bake00, bake01, ...)."""
    return [path for bake in (tmp_path / "cookies").iterdir() for path in bake.rglob("*")]


@pytest.fixture(autouse=True)
def _hook_scripts_in_tmp_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # cookiecutter writes each rendered hook to a NamedTemporaryFile(delete=False): keep them here.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def test_hook_mirrors_deploytool_ports() -> None:
    assert hook.BLOCK_SIZE == ports.BLOCK_SIZE
    assert hook.INSTALL_TYPES == tuple(ports.SLOTS)
    assert (hook.LOWEST_START, hook.HIGHEST_START) == (49160, 65480)


def test_slug_cannot_take_a_top_level_name_of_the_generated_repo() -> None:
    tops = PORTS.parents[1].iterdir()  # the package itself is named by the slug: skip it
    names = {path.stem for path in tops if (path.is_dir() or path.suffix == ".py") and "{{" not in path.name}
    assert names <= hook.REPO_NAMES


def test_every_answer_has_a_rule_and_every_choice_passes() -> None:
    spec = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
    public = {key for key in spec if not key.startswith("_")}
    assert {answer for answer, _check, _rule in hook.RULES} == public
    for key, choices in spec.items():
        if isinstance(choices, list) and not key.startswith("_"):
            for value in choices:
                needs = {"cache": "redis"} if (key, value) == ("worker", "celery") else {}  # its broker
                assert hook.errors(answers(**{key: value, **needs})) == [], (key, value)


def test_celery_without_its_redis_is_one_clear_error() -> None:
    """A rule between answers: the worker's broker is the install's own Redis."""
    assert hook.errors(answers(worker="celery", cache="memcached")) == [
        "worker=celery: celery needs cache=redis: the install's own Redis is the worker's broker and result store"
    ]
    assert hook.errors(answers(worker="celery", cache="redis")) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("project_slug", "baz"),
        ("project_slug", "my_site2"),
        ("domain", "baz.example"),
        ("domain", "www.a-b.example.com"),
        ("domain", "xn--80ak6aa92e.com"),
        ("domain", "a" * 50 + ".example"),  # 58: stage.<domain> is 64, a certificate's CN
        ("user", "baz-www"),
        ("user", "_baz"),
        ("user", "b" * 32),
        ("port_block_start", 49160),
        ("port_block_start", 60000),
        ("port_block_start", 65480),
        ("port_block_start", "60010"),
        ("python_version", "3.10"),
        ("python_version", "3.13"),
        ("admin_basic_auth", False),
        ("admin_basic_auth", "no"),
        ("certbot_email", "ops@baz.example"),
        ("admin_email", "errors@baz.example"),
        ("app_upstreams", "10.0.0.1"),
        ("app_upstreams", "app1:60001 weight=3, app2:60001"),
        ("app_upstreams", "10.0.0.11:60001, 192.168.1.5:60011 weight=2"),
        ("app_upstreams", ",".join(f"10.0.0.{n}" for n in range(1, 33))),  # 32: what the zone holds
        ("backup_keep_daily", 1),
        ("backup_keep_daily", "30"),
        ("backup_keep_weekly", 0),
        ("backup_keep_monthly", "0"),
    ],
)
def test_good_answer_passes(key: str, value: object) -> None:
    assert hook.errors(answers(**{key: value})) == []


def test_rendered_hook_passes_defaults_and_quotes(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert run_hook(tmp_path, capfd, answers()) == (True, [])
    tricky = answers(project_name='Baz\'s "Big" \\ Project\'\'\' """ \\u0027', project_slug="baz")
    assert run_hook(tmp_path, capfd, tricky) == (True, [])


# (extra_context, the hook's line for it): each breaks exactly one rule.
BAD = [
    ({"project_name": "  ", "project_slug": "baz"}, 'project_name="  ": must not be empty'),
    ({"project_slug": "test"}, "project_slug=test: would shadow a module"),
    ({"project_slug": "logging"}, "project_slug=logging: would shadow a module"),
    ({"project_slug": "django"}, "project_slug=django: would shadow a module"),
    ({"project_slug": "deploytool"}, "project_slug=deploytool: would shadow a module"),
    ({"project_slug": "_baz", "domain": "baz.example"}, "project_slug=_baz: must be a Python identifier"),
    ({"project_slug": "Baz", "domain": "baz.example", "user": "baz"}, "project_slug=Baz: must be a Python"),
    ({"project_slug": "class"}, "project_slug=class: must be a Python identifier"),
    ({"domain": "https://baz.example"}, "domain=https://baz.example: must be a lowercase host name"),
    ({"domain": "Baz.example"}, "domain=Baz.example: must be a lowercase host name"),
    ({"domain": "baz.example:8000"}, "domain=baz.example:8000: must be a lowercase host name"),
    ({"domain": "baz.example/app"}, "domain=baz.example/app: must be a lowercase host name"),
    ({"domain": "baz.example."}, "domain=baz.example.: must be a lowercase host name"),
    ({"domain": "-baz.example"}, "domain=-baz.example: must be a lowercase host name"),
    ({"domain": "localhost"}, "domain=localhost: must be a lowercase host name"),
    ({"domain": "10.0.0.1"}, "domain=10.0.0.1: must be a lowercase host name"),
    ({"domain": "a" * 64 + ".example"}, f"domain={'a' * 64}.example: must be a lowercase host name"),
    ({"user": "root"}, "user=root: is a system account"),
    ({"user": "www-data"}, "user=www-data: is a system account"),
    ({"user": "postgres"}, "user=postgres: is a system account"),
    ({"user": "1baz"}, "user=1baz: must be a Unix user name"),
    ({"user": "b" * 33}, f"user={'b' * 33}: must be a Unix user name"),
    ({"port_block_start": 60005}, f"port_block_start=60005: {PORT_RULE}"),
    ({"port_block_start": 49150}, f"port_block_start=49150: {PORT_RULE}"),
    ({"port_block_start": 65490}, f"port_block_start=65490: {PORT_RULE}"),
    ({"port_block_start": "abc"}, f"port_block_start=abc: {PORT_RULE}"),
    ({"port_block_start": 60000.5}, f"port_block_start=60000.5: {PORT_RULE}"),
    ({"port_block_start": -60000}, f"port_block_start=-60000: {PORT_RULE}"),
    ({"python_version": "3"}, "python_version=3: must be 3.X with X at least 10"),
    ({"python_version": "3.11.2"}, "python_version=3.11.2: must be 3.X"),
    ({"python_version": "python3.11"}, "python_version=python3.11: must be 3.X"),
    ({"python_version": "2.7"}, "python_version=2.7: must be 3.X"),
    ({"python_version": "3.9"}, "python_version=3.9: must be 3.X with X at least 10"),
    ({"admin_basic_auth": 1}, "admin_basic_auth=1: must be a boolean: true or false"),
    (
        {"certbot_email": "ops at baz.example"},
        'certbot_email="ops at baz.example": must be empty or an e-mail',
    ),
    ({"certbot_email": "ops@@baz.example"}, "certbot_email=ops@@baz.example: must be empty or an e-mail"),
    ({"admin_email": "root@localhost"}, "admin_email=root@localhost: must be empty or an e-mail"),
    ({"app_upstreams": "app1,,app2"}, 'app_upstreams="app1,,app2": must be empty or comma-separated'),
    ({"app_upstreams": "10.0.0.1:0"}, "app_upstreams=10.0.0.1:0: must be empty or comma-separated"),
    ({"app_upstreams": "app1:65536"}, "app_upstreams=app1:65536: must be empty or comma-separated"),
    ({"app_upstreams": "app1 weight=0"}, 'app_upstreams="app1 weight=0": must be empty'),
    ({"app_upstreams": "http://app1"}, "app_upstreams=http://app1: must be empty or comma-separated"),
    ({"app_upstreams": "app1:8000, app1:8000 weight=2"}, 'app_upstreams="app1:8000, app1:8000 weight=2": '),
    ({"app_upstreams": "300.1.1.1"}, "app_upstreams=300.1.1.1: must be empty or comma-separated"),
    # The app servers have no authentication: never public, loopback or every address.
    ({"app_upstreams": "127.0.0.1:60011"}, "app_upstreams=127.0.0.1:60011: must be empty or comma-separated"),
    ({"app_upstreams": "localhost"}, "app_upstreams=localhost: must be empty or comma-separated"),
    ({"app_upstreams": "0.0.0.0"}, "app_upstreams=0.0.0.0: must be empty or comma-separated"),
    ({"app_upstreams": "8.8.8.8:60001"}, "app_upstreams=8.8.8.8:60001: must be empty or comma-separated"),
    ({"app_upstreams": "224.0.0.1"}, "app_upstreams=224.0.0.1: must be empty or comma-separated"),
    ({"app_upstreams": "169.254.1.1"}, "app_upstreams=169.254.1.1: must be empty or comma-separated"),
    (
        {"app_upstreams": ",".join(f"10.0.0.{n}" for n in range(1, 34))},
        'app_upstreams="10.0.0.1,10.0.0.2,',
    ),
    # Answers that would break later: a certificate's CN, a comment line, a shadowed module.
    ({"domain": "a" * 51 + ".example"}, f"domain={'a' * 51}.example: must be at most 58 characters"),
    ({"project_name": "Baz\nimport os", "project_slug": "baz"}, 'project_name="Baz\\nimport os": must be one line'),
    ({"project_slug": "paramiko"}, "project_slug=paramiko: would shadow a module"),
    ({"project_slug": "markupsafe"}, "project_slug=markupsafe: would shadow a module"),
    ({"project_slug": "pytest"}, "project_slug=pytest: would shadow a module"),
    ({"backup_keep_daily": 0}, "backup_keep_daily=0: must be a whole number of days from 1 to 3660"),
    ({"backup_keep_weekly": "four"}, "backup_keep_weekly=four: must be a whole number of weeks from 0 to 520"),
    ({"backup_keep_monthly": -1}, "backup_keep_monthly=-1: must be a whole number of months from 0 to 120"),
    ({"worker": "celery"}, "worker=celery: celery needs cache=redis"),  # the default cache is none
]


@pytest.mark.parametrize(("extra", "line"), BAD, ids=[line.split(":")[0][:40] for _extra, line in BAD])
def test_bad_answer_stops_the_bake(
    cookies: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str], extra: dict[str, Any], line: str
) -> None:
    result = cookies.bake(extra_context=extra, template=str(TEMPLATE))
    assert result.exit_code != 0
    assert isinstance(result.exception, FailedHookException)
    errors = capfd.readouterr().err.splitlines()
    assert len(errors) == 1 and errors[0].startswith(line), errors
    assert leftovers(tmp_path) == []


def test_each_line_names_answer_value_and_rule(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    bad = {
        "project_slug": "email",
        "domain": "Baz.example",
        "user": "root",
        "port_block_start": "60005",
        "python_version": "3.9",
        "certbot_email": "ops",
        "app_upstreams": "app1:0",
    }
    passed, lines = run_hook(tmp_path, capfd, {**answers(), **bad})
    assert not passed
    for (answer, value), line in zip(bad.items(), lines, strict=True):
        prefix = f"{answer}={value}: "
        assert line.startswith(prefix)
        assert line.removeprefix(prefix) in {rule for name, _check, rule in hook.RULES if name == answer}


@pytest.mark.parametrize(
    ("key", "value", "choices"),
    [
        ("install_type", "prod", "dev, stage, pro"),
        ("app_server", "daphne", "uwsgi, gunicorn"),
        ("process_manager", "runit", "systemd, supervisor"),
        ("database", "mysql", "sqlite, postgresql"),
        ("cache", "memcache", "none, redis, memcached"),
        ("balancing", "hash", "round_robin, least_conn, ip_hash"),
    ],
)
def test_unknown_choice(
    cookies: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str], key: str, value: str, choices: str
) -> None:
    # cookiecutter itself refuses an unknown choice in extra_context, before the hook runs...
    result = cookies.bake(extra_context={key: value}, template=str(TEMPLATE))
    assert isinstance(result.exception, ValueError) and result.exit_code != 0
    assert capfd.readouterr().err == ""
    assert leftovers(tmp_path) == []
    # ...but not in a replay file (`cookiecutter --replay-file`): there the hook is the check.
    replay, config, output = tmp_path / "replay.json", tmp_path / "config.yaml", tmp_path / "replayed"
    replay.write_text(json.dumps({"cookiecutter": {**answers(), key: value}}), encoding="utf-8")
    config.write_text(f"replay_dir: {tmp_path / 'replays'}\ncookiecutters_dir: {tmp_path}\n", "utf-8")
    with pytest.raises(FailedHookException):
        cookiecutter(str(TEMPLATE), replay=str(replay), output_dir=str(output), config_file=str(config))
    assert capfd.readouterr().err.splitlines() == [f"{key}={value}: must be one of {choices}"]
    assert list(output.iterdir()) == []


@pytest.mark.parametrize("start", [49160, 65480])
def test_lowest_and_highest_block_start_bake(cookies: Any, start: int) -> None:
    result = cookies.bake(extra_context={"port_block_start": start}, template=str(TEMPLATE))
    assert result.exit_code == 0, result.exception
    recorded = json.loads((result.project_path / "etc" / "project.json").read_text(encoding="utf-8"))
    assert recorded["port_block_start"] == start


def test_too_many_upstreams_is_its_own_rule() -> None:
    many = ",".join(f"10.0.0.{n}" for n in range(1, 34))
    assert hook.errors(answers(app_upstreams=many)) == [
        f'app_upstreams="{many}": names more than 32 app servers, which nginx\'s shared upstream zone is sized for'
    ]


def test_slug_rule_covers_every_module_of_the_pinned_requirements(project_venv: Path) -> None:
    """Each top-level module a pinned requirement installs (read from a venv of the pins)."""
    script = (
        "import importlib.metadata as m\n"
        "for d in m.distributions():\n"
        "    top = d.read_text('top_level.txt')\n"
        "    names = top.split() if top else [str(f).split('/')[0].removesuffix('.py') for f in d.files or []]\n"
        "    print('\\n'.join(n for n in names if n.isidentifier() and not n.startswith('__')))\n"
    )
    proc = subprocess.run([project_venv / "bin/python", "-c", script], capture_output=True, text=True, check=True)
    modules = {name.lower() for name in proc.stdout.split()}
    assert modules and modules - hook.DEPENDENCIES == set()


def test_a_name_with_quotes_and_backslashes_bakes_valid_python_and_html(cookies: Any) -> None:
    name = 'Baz\'s "Big" \\ Project \'\'\' """ <b>'
    result = cookies.bake(extra_context={"project_name": name, "project_slug": "baz"}, template=str(TEMPLATE))
    assert result.exit_code == 0, result.exception
    package = Path(result.project_path) / "baz"
    for module in ("settings.py", "urls.py"):
        tree = ast.parse((package / module).read_text(encoding="utf-8"))
        assert name in (ast.get_docstring(tree) or ""), module
    html = (package / "templates/baz/home.html").read_text(encoding="utf-8")
    assert "<b>" not in html and "&lt;b&gt;" in html


def test_template_markup_in_a_name_is_refused() -> None:
    """cookiecutter renders a typed answer once; markup that survives (a replay file, a
    --replay of an older bake) would be rendered again in the generated files."""
    assert hook.errors({**answers(), "project_name": "Baz {{ 7*7 }}"}) == [
        'project_name="Baz {{ 7*7 }}": must be one line of plain text: no control characters (newline, tab) and '
        "no template markup (a brace followed by a brace, % or #)"
    ]
