"""The command line's parsing, in-process with click's CliRunner: no host is reached.

The use cases (``oneoff.app``) are replaced by recorders where a test would otherwise
connect, so what is checked is what the CLI hands them: typed values, not a dict.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from oneoff.app import listings, runs
from oneoff.app import run as app_run
from oneoff.app.listings import Listing
from oneoff.cli.group import first_word, oneoff
from oneoff.errors import ExitStatus
from oneoff.version import VERSION

BUILTINS = ("releases", "tasks", "hosts", "audit", "ps", "logs", "kill")
INVENTORY = """\
hosts:
  web1: {hostname: 10.0.0.1, app_root: /srv/shop, primary: true}
  web2: {hostname: 10.0.0.2, app_root: /srv/shop, user: deploy, port: 2222}
groups:
  prod: {hosts: [web1, web2]}
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(oneoff, list(args))


@pytest.fixture
def inventory(tmp_path: Path) -> str:
    path = tmp_path / "oneoff.yaml"
    path.write_text(INVENTORY)
    return str(path)


@pytest.fixture
def run_requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[app_run.RunRequest]]:
    """What the default command asks ``app.run.run`` for (nothing runs)."""
    seen: list[app_run.RunRequest] = []

    def fake(request: app_run.RunRequest, **_: Any) -> app_run.RunOutcome:
        seen.append(request)
        return app_run.RunOutcome([], 7)

    monkeypatch.setattr(app_run, "run", fake)
    yield seen


# -- help and version --------------------------------------------------------------------


def test_help_lists_every_command_and_every_way_to_run() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in BUILTINS:
        assert f"\n  {command} " in result.stdout, command
    for form in ("TASK [ARGS]...", "-- COMMAND [ARGS]...", "run SCRIPT [ARGS]...", "shell"):
        assert form in result.stdout
    assert "--lock NAME" in result.stdout and "--dry-run" in result.stdout


def test_bare_oneoff_prints_the_help_as_a_usage_error() -> None:
    result = invoke()
    assert result.exit_code == ExitStatus.USAGE
    assert result.stdout == ""
    assert "Usage: oneoff [OPTIONS] TASK [ARGS]..." in result.stderr
    assert "releases" in result.stderr and "kill" in result.stderr


@pytest.mark.parametrize("args", [["-h"], ["-H", "web1", "--help"], ["-h", "releases"]])
def test_help_anywhere_before_the_first_word_is_the_programs_help(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: oneoff [OPTIONS] TASK [ARGS]...")


def test_each_builtin_has_its_own_help() -> None:
    result = invoke("logs", "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: oneoff logs [OPTIONS] RUN_ID")
    assert "--follow" in result.stdout and "--lock" not in result.stdout


def test_version() -> None:
    result = invoke("-V")
    assert result.exit_code == 0 and VERSION in result.stdout


# -- built-ins take their own options only -----------------------------------------------


def test_a_run_option_given_to_a_builtin_is_a_usage_error() -> None:
    result = invoke("hosts", "--lock", "foo", "--timeout", "5m", "--follow", "--detach")
    assert result.exit_code == ExitStatus.USAGE
    first, usage, hint = result.stderr.splitlines()
    assert first == "oneoff: `oneoff hosts` has no option --lock"
    assert usage == "Usage: oneoff hosts [OPTIONS]"
    assert hint == "Try 'oneoff hosts -h' for help."


def test_a_run_option_before_a_builtin_is_refused_too() -> None:
    result = invoke("--lock", "foo", "hosts")
    assert result.exit_code == ExitStatus.USAGE
    assert result.stderr.startswith("oneoff: `oneoff hosts` has no option --lock\n")


@pytest.mark.parametrize(
    ("builtin", "option"),
    [
        ("hosts", "--accept-new-host-keys"),
        ("hosts", "--parallel=4"),
        ("releases", "--since=1h"),
        ("tasks", "--all"),
        ("audit", "--release=x"),
        ("ps", "--follow"),
        ("logs", "--json"),
        ("kill", "--timestamps"),
        ("kill", "--json"),
    ],
)
def test_options_that_mean_nothing_to_a_builtin_are_refused(builtin: str, option: str) -> None:
    for args in ([builtin, "-H", "web1", option, "x"], [option, builtin, "-H", "web1", "x"]):
        result = invoke(*args)
        assert result.exit_code == ExitStatus.USAGE, (args, result.output)
        assert result.stderr.startswith(f"oneoff: `oneoff {builtin}` has no option "), args


def test_global_options_work_before_and_after_a_builtin(
    inventory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []

    def releases(inv: str, targets: tuple[str, ...], **kw: Any) -> Listing:
        calls.append((inv, targets, kw["release_id"], kw["access"]))
        return Listing([])

    monkeypatch.setattr(listings, "releases", releases)
    before = invoke("-i", inventory, "-H", "prod", "--accept-new-host-keys", "-q", "releases")
    after = invoke("releases", "-i", inventory, "-H", "prod", "--accept-new-host-keys", "-q")
    mixed = invoke("-H", "web1", "releases", "-H", "web2", "-i", inventory, "--release", "r1")
    assert before.exit_code == after.exit_code == mixed.exit_code == 0, mixed.output
    assert calls[0] == calls[1]
    assert calls[0][1] == ("prod",) and calls[0][3].accept_new_host_keys
    assert calls[2][1:3] == (("web1", "web2"), "r1")


def test_hosts_lists_the_inventory_as_a_table_or_json(inventory: str) -> None:
    table = invoke("-i", inventory, "hosts")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split() == ["HOST", "ADDRESS", "GROUPS", "ROLES", "PRIMARY"]
    assert "deploy@10.0.0.2:2222" in table.stdout
    as_json = invoke("hosts", "-H", "web2", "--json", "-i", inventory)
    assert as_json.exit_code == 0
    assert as_json.stdout.count("\n") == 1 and '"host": "web2"' in as_json.stdout


def test_a_builtin_that_needs_a_target_says_so() -> None:
    for builtin in ("releases", "tasks", "audit", "ps"):
        result = invoke(builtin)
        assert result.exit_code == ExitStatus.USAGE
        assert f"`oneoff {builtin}` needs a target" in result.stderr


def test_logs_takes_one_run_id_and_options_in_any_order(
    inventory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Any, ...]] = []

    def logs(inv: str, target: tuple[str, ...], run_id: str, out: Any, **kw: Any) -> int:
        seen.append((target, run_id, kw["follow"], kw["timestamps"]))
        return 3

    monkeypatch.setattr(runs, "logs", logs)
    result = invoke("-H", "web1", "logs", "20261129T215658Z-434ff4", "-f", "-i", inventory)
    assert result.exit_code == 3
    assert seen == [(("web1",), "20261129T215658Z-434ff4", True, False)]
    missing = invoke("logs", "-H", "web1")
    assert missing.exit_code == ExitStatus.USAGE
    assert missing.stderr.startswith("oneoff: missing argument 'RUN_ID'")


# -- the default command: TASK / -- COMMAND / run SCRIPT / shell --------------------------


def test_a_task_with_options_first_and_its_own_arguments_after(
    run_requests: list[app_run.RunRequest],
) -> None:
    result = invoke(
        "-H", "prod", "--all", "--timeout", "5m", "-e", "A=1", "--lock", "db",
        "--batch", "25%", "migrate", "--fake", "-H", "0001",
    )  # fmt: skip
    assert result.exit_code == 7, result.output
    (request,) = run_requests
    assert request.kind == "task"
    assert request.words == ("migrate", "--fake", "-H", "0001")
    assert request.targets == ("prod",) and request.scope == "all"
    assert request.timeout == 300.0 and request.lock == "db" and request.batch == 0.25
    assert dict(request.env) == {"A": "1"}


@pytest.mark.parametrize(
    ("args", "kind", "words"),
    [
        (["--", "python", "-V"], "command", ("python", "-V")),
        (["--", "releases"], "command", ("releases",)),
        (["run", "scripts/fix.py", "--dry-run"], "script", ("scripts/fix.py", "--dry-run")),
        (["shell"], "task", ("shell",)),
        (["-t", "shell"], "task", ("shell",)),
    ],
)
def test_the_four_ways_to_run(
    run_requests: list[app_run.RunRequest], args: list[str], kind: str, words: tuple[str, ...]
) -> None:
    result = invoke("-H", "web1", *args)
    assert result.exit_code == 7, result.output
    assert (run_requests[0].kind, run_requests[0].words) == (kind, words)


def test_tty_flags_and_detach(run_requests: list[app_run.RunRequest]) -> None:
    invoke("-H", "web1", "-T", "--detach", "--dry-run", "--no-audit", "--", "true")
    invoke("-H", "web1", "--", "true")
    forced, default = run_requests
    assert forced.tty is False and forced.detach and forced.dry_run and not forced.audit
    assert default.tty is None and not default.detach and default.audit


def test_options_after_the_task_without_a_target_say_options_go_first() -> None:
    result = invoke("migrate", "-H", "prod")
    assert result.exit_code == ExitStatus.USAGE
    first = result.stderr.splitlines()[0]
    assert first.startswith("oneoff: options go before the task: -H after 'migrate'")
    assert first.endswith("try: oneoff -H prod migrate")
    assert "Usage: oneoff [OPTIONS] TASK [ARGS]..." in result.stderr


@pytest.mark.parametrize(
    ("args", "suggested"),
    [
        (["run", "x.py", "--host=prod"], "oneoff --host=prod run x.py"),
        (["migrate", "--fake", "-Hprod"], "oneoff -Hprod migrate --fake"),
        (["--", "ls", "-H", "prod"], "oneoff -H prod -- ls"),
    ],
)
def test_the_options_first_hint_moves_them(args: list[str], suggested: str) -> None:
    result = invoke(*args)
    assert result.exit_code == ExitStatus.USAGE
    assert result.stderr.splitlines()[0].endswith("try: " + suggested)


def test_without_a_target_and_nothing_of_ours_after_the_task_it_is_no_target() -> None:
    for args in (["migrate", "--fake"], ["--", "grep", "-i", "x"]):
        result = invoke(*args)
        assert result.exit_code == ExitStatus.USAGE
        assert result.stderr.startswith("oneoff: no target"), args


def test_nothing_to_run_is_a_usage_error_with_the_usage() -> None:
    result = invoke("-H", "web1")
    assert result.exit_code == ExitStatus.USAGE
    assert result.stderr.splitlines()[:2] == [
        "oneoff: nothing to run",
        "Usage: oneoff [OPTIONS] TASK [ARGS]...",
    ]


def test_all_and_one_exclude_each_other(run_requests: list[app_run.RunRequest]) -> None:
    result = invoke("-H", "prod", "--all", "--one", "--", "true")
    assert result.exit_code == ExitStatus.USAGE
    assert "--all and --one exclude each other" in result.stderr
    assert run_requests == []


def test_bad_values_are_usage_errors_that_name_the_option() -> None:
    for args, needle in (
        (["--timeout", "soon"], "--timeout"),
        (["--batch", "0"], "--batch"),
        (["-e", "1X=2"], "'1X' is not a variable name"),
    ):
        result = invoke("-H", "web1", *args, "--", "true")
        assert result.exit_code == ExitStatus.USAGE, args
        assert needle in result.stderr.splitlines()[0], (args, result.stderr)


def test_an_extra_env_value_is_never_echoed() -> None:
    result = invoke("-H", "web1", "-e", "BAD KEY=s3cret", "--", "true")
    assert result.exit_code == ExitStatus.USAGE
    assert "s3cret" not in result.output


# -- routing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "at"),
    [
        (["releases"], 0),
        (["-H", "ps", "ps"], 2),
        (["-Hweb1", "ps"], 1),
        (["-qH", "web1", "ps"], 2),
        (["--host", "x", "--json", "tasks"], 3),
        (["--host=x", "--", "ps"], 1),
        (["-q", "-v"], None),
    ],
)
def test_first_word_skips_options_and_their_values(args: list[str], at: int | None) -> None:
    takes = {"-H": True, "--host": True, "-q": False, "-v": False, "--json": False}
    assert first_word(args, takes) == at
