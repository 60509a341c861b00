"""Each reporter, and the views they use, against a fake terminal: bytes in, bytes out."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

import pytest

from oneoff.client.fleet import DriftError
from oneoff.errors import ConnectError, NotStarted
from oneoff.outcome import HostResult
from oneoff.output import views
from oneoff.output.reporters import (
    JsonReporter,
    PrefixReporter,
    RawReporter,
    make_reporter,
)
from oneoff.output.terminal import AnyStream, Terminal
from oneoff.plan.probe import ResolvedRelease
from oneoff.values import RunSpec


class FakeTerminal(Terminal):
    """BytesIO streams; which streams are terminals is said, and raw mode is recorded."""

    def __init__(self, ttys: tuple[AnyStream, ...] = (), environ: dict[str, str] | None = None):
        self.out, self.err = io.BytesIO(), io.BytesIO()
        super().__init__(self.out, self.err, stdin=io.BytesIO(), environ=environ or {})
        self.ttys = set(ttys)
        self.raw_log: list[str] = []

    def is_tty(self, stream: AnyStream) -> bool:
        return stream in self.ttys

    def window_size(self) -> tuple[int, int] | None:
        return (40, 120) if "stdout" in self.ttys else None

    def raw_mode(self) -> AbstractContextManager[None]:
        @contextmanager
        def raw() -> Iterator[None]:
            self.raw_log.append("raw")
            try:
                yield
            finally:
                self.raw_log.append("restored")

        return raw()

    @property
    def stdout_text(self) -> str:
        return self.out.getvalue().decode()

    @property
    def stderr_text(self) -> str:
        return self.err.getvalue().decode()


def release(host: str = "web1", release_id: str = "20261128T120000") -> ResolvedRelease:
    root = "/srv/shop"
    path = f"{root}/releases/{release_id}"
    return ResolvedRelease(
        host=host,
        app_root=root,
        path=path,
        release_id=release_id,
        venv=f"{path}/.venv",
        python=f"{path}/.venv/bin/python",
        env_files=(f"{path}/.env",),
        revision="3f2c1a9e0b7d",
    )


def spec(host: str = "web1", **changes: Any) -> RunSpec:
    base = RunSpec(
        host=host,
        run_id="20261129T215658Z-434ff4",
        argv=("python", "manage.py", "migrate"),
        display="python manage.py migrate",
        release_path="/srv/shop/releases/20261128T120000",
        release_id="20261128T120000",
        revision="3f2c1a9e0b7d",
        venv="/srv/shop/releases/20261128T120000/.venv",
        env_files=(),
        state_dir="/srv/shop/.oneoff",
    )
    return replace(base, **changes)


def ok(host: str, status: int = 0, **changes: Any) -> HostResult:
    return HostResult(
        host=host,
        display="python manage.py migrate",
        run_id=f"{host}-run",
        release_id="20261128T120000",
        status=status,
        duration=1.5,
        **changes,
    )


# -- choosing -----------------------------------------------------------------------------


def test_make_reporter_raw_for_one_prefixed_for_several_json_when_asked() -> None:
    terminal = FakeTerminal()
    assert isinstance(make_reporter(terminal, ["web1"]), RawReporter)
    assert isinstance(make_reporter(terminal, ["web1", "web2"]), PrefixReporter)
    assert isinstance(make_reporter(terminal, ["web1"], as_json=True), JsonReporter)


def test_progress_only_for_long_fan_outs_on_a_terminal() -> None:
    hosts = [f"web{i}" for i in range(9)]
    on_tty = make_reporter(FakeTerminal(("stderr",)), hosts)
    piped = make_reporter(FakeTerminal(), hosts)
    quiet = make_reporter(FakeTerminal(("stderr",)), hosts, quiet=True)
    assert isinstance(on_tty, PrefixReporter) and on_tty.progress
    assert isinstance(piped, PrefixReporter) and not piped.progress
    assert isinstance(quiet, PrefixReporter) and not quiet.progress


# -- raw: one host ------------------------------------------------------------------------


def test_raw_passes_bytes_through_unchanged_to_the_same_stream() -> None:
    terminal = FakeTerminal()
    reporter = RawReporter(terminal)
    reporter.output("web1", "stdout", b"\xff partial")
    reporter.output("web1", "stderr", b"err\r\n")
    reporter.output("web1", "stdout", b" line\n")
    assert terminal.out.getvalue() == b"\xff partial line\n"
    assert terminal.err.getvalue() == b"err\r\n"


def test_raw_notices_unless_quiet_and_verbose_start_line() -> None:
    terminal = FakeTerminal()
    RawReporter(terminal).notice("web1", "waiting for lock 'db'")
    RawReporter(terminal, quiet=True).notice("web1", "dropped")
    RawReporter(terminal, verbose=True).started("web1", release(), spec())
    lines = terminal.stderr_text.splitlines()
    assert lines[0] == "oneoff: web1: waiting for lock 'db'"
    assert lines[1].startswith("oneoff: web1: release 20261128T120000 (3f2c1a9e0b7d) at /srv")
    assert len(lines) == 2


def test_raw_summary_says_the_error_but_not_a_not_started_one() -> None:
    terminal = FakeTerminal()
    failed = HostResult(host="web1", error=ConnectError("connection refused", host="web1"))
    RawReporter(terminal).summary([failed], 255)
    RawReporter(terminal).summary([HostResult(host="web1", error=NotStarted("x"))], 1)
    assert terminal.stderr_text == "oneoff: web1: connection refused\n"
    assert terminal.stdout_text == ""


def test_raw_summary_prints_the_detached_run_id_alone() -> None:
    terminal = FakeTerminal()
    RawReporter(terminal).summary([ok("web1", detached=True)], 0)
    assert terminal.stdout_text == "web1-run\n"


def test_raw_summary_prints_the_dry_run_plan() -> None:
    terminal = FakeTerminal()
    plan = {
        "cwd": "/srv/shop/releases/r1",
        "path_head": "/srv/shop/releases/r1/.venv/bin",
        "env_files": [{"path": "/srv/shop/releases/r1/.env", "keys": 3}],
        "extra_env_keys": ["API_TOKEN"],
        "task": "migrate",
        "task_source": "oneoff.yaml:15",
        "lock": "migrate",
        "timeout": 1800.0,
    }
    RawReporter(terminal).summary([ok("web1", plan=plan, revision="3f2c")], 0)
    assert terminal.stdout_text == (
        "web1:\n"
        "  release:     20261128T120000 (/srv/shop/releases/r1) revision 3f2c\n"
        "  interpreter: /srv/shop/releases/r1/.venv/bin/python\n"
        "  cwd:         /srv/shop/releases/r1\n"
        "  env file:    /srv/shop/releases/r1/.env (3 keys)\n"
        "  extra env:   API_TOKEN=***\n"
        "  task:        migrate (oneoff.yaml:15)\n"
        "  command:     python manage.py migrate\n"
        "  lock:        migrate\n"
        "  timeout:     1800s\n"
    )


# -- raw mode: entered on a PTY start from an interactive terminal, restored by close() ---


def test_a_pty_run_on_a_terminal_goes_raw_until_close() -> None:
    terminal = FakeTerminal(("stdin", "stdout"))
    reporter = RawReporter(terminal)
    reporter.started("web1", release(), spec(pty=True))
    assert terminal.raw_log == ["raw"] and reporter.raw
    reporter.close()
    reporter.close()
    assert terminal.raw_log == ["raw", "restored"] and not reporter.raw


@pytest.mark.parametrize(
    ("ttys", "pty"), [((), True), (("stdout",), True), (("stdin", "stdout"), False)]
)
def test_no_raw_mode_without_a_pty_or_without_a_keyboard(
    ttys: tuple[AnyStream, ...], pty: bool
) -> None:
    terminal = FakeTerminal(ttys)
    reporter = RawReporter(terminal)
    reporter.started("web1", release(), spec(pty=pty))
    reporter.close()
    assert terminal.raw_log == []


def test_json_reporter_also_gives_a_pty_run_the_raw_terminal() -> None:
    terminal = FakeTerminal(("stdin",))
    reporter = JsonReporter(terminal)
    reporter.started("web1", release(), spec(pty=True))
    reporter.close()
    assert terminal.raw_log == ["raw", "restored"]


# -- prefixed: several hosts --------------------------------------------------------------


def test_prefixed_lines_are_whole_and_never_mix_two_hosts() -> None:
    terminal = FakeTerminal()
    reporter = PrefixReporter(terminal, ["web1", "worker1"])
    reporter.output("web1", "stdout", b"one\ntw")
    reporter.output("worker1", "stdout", b"par")
    reporter.output("web1", "stdout", b"o\n")
    reporter.output("worker1", "stderr", b"oops\n")
    reporter.finished(ok("worker1"))  # its unfinished line is flushed, with a newline
    assert terminal.stdout_text == "[web1]    one\n[web1]    two\n[worker1] par\n"
    assert terminal.stderr_text == "[worker1] oops\n"


def test_prefixes_are_coloured_on_a_terminal_unless_no_color() -> None:
    coloured = FakeTerminal(("stdout",))
    PrefixReporter(coloured, ["a", "b"]).output("b", "stdout", b"x\n")
    plain = FakeTerminal(("stdout",), environ={"NO_COLOR": "1"})
    PrefixReporter(plain, ["a", "b"]).output("b", "stdout", b"x\n")
    assert coloured.out.getvalue() == b"\x1b[32m[b]\x1b[0m x\n"
    assert plain.out.getvalue() == b"[b] x\n"


def test_prefixed_summary_table_and_count_line() -> None:
    terminal = FakeTerminal()
    results = [
        ok("web1"),
        ok("web2", status=3),
        HostResult(host="worker1", error=ConnectError("connection refused", host="worker1")),
        HostResult(host="worker2", error=NotStarted("not started (an earlier host failed)")),
    ]
    reporter = PrefixReporter(terminal, [r.host for r in results])
    for result in results:
        reporter.finished(result)
    reporter.summary(results, 1)
    lines = terminal.stderr_text.splitlines()
    assert lines[0] == "oneoff: worker1: connection refused"
    assert lines[1].split() == ["HOST", "RELEASE", "RESULT", "DURATION"]
    assert lines[2].split() == ["web1", "20261128T120000", "exit", "0", "1.5s"]
    assert lines[4].split()[:3] == ["worker1", "-", "connection"]
    assert lines[-1] == "4 hosts: 1 ok, 1 failed, 1 could not run, 1 not started"


def test_no_table_when_quiet_detached_refused_or_a_dry_run() -> None:
    hosts = ["web1", "web2"]
    drift = DriftError({"web1": release("web1", "r1"), "web2": release("web2", "r2")})
    cases: list[tuple[dict[str, Any], list[HostResult]]] = [
        ({"quiet": True}, [ok("web1"), ok("web2")]),
        ({}, [HostResult(host=h, error=drift) for h in hosts]),
        ({}, [ok("web1", plan={"cwd": "/a"}), ok("web2", plan={"cwd": "/b"})]),
    ]
    for kwargs, results in cases:
        terminal = FakeTerminal()
        PrefixReporter(terminal, hosts, **kwargs).summary(results, 0)
        assert terminal.stderr_text == "", kwargs
    terminal = FakeTerminal()
    results = [ok("web1", detached=True), ok("web2", detached=True)]
    PrefixReporter(terminal, hosts, detach=True).summary(results, 0)
    assert terminal.stdout_text == "web1\tweb1-run\nweb2\tweb2-run\n"
    assert terminal.stderr_text == ""


def test_the_progress_line_is_cleared_before_output_and_at_the_summary() -> None:
    terminal = FakeTerminal(("stderr",))
    reporter = PrefixReporter(terminal, ["a", "b", "c"], progress=True, quiet=True)
    reporter.finished(ok("a"))
    assert terminal.stderr_text.endswith("] 1/3 hosts done")
    reporter.output("b", "stderr", b"x\n")
    reporter.summary([ok("a"), ok("b"), ok("c")], 0)
    text = terminal.stderr_text
    assert "\r\x1b[K[b] x\n" in text and text.endswith("\r\x1b[K")


# -- JSON Lines ---------------------------------------------------------------------------


def test_json_events_on_stdout_and_notices_on_stderr() -> None:
    terminal = FakeTerminal()
    reporter = JsonReporter(terminal)
    reporter.started("web1", release(), spec())
    reporter.output("web1", "stdout", b"out\n")
    reporter.output("web1", "stderr", b"\xff\xfe")
    reporter.notice("web1", "waiting for lock 'db'")
    reporter.finished(ok("web1", status=3))
    reporter.summary([ok("web1", status=3)], 3)
    events = [json.loads(line) for line in terminal.stdout_text.splitlines()]
    assert [e["event"] for e in events] == ["start", "output", "output", "exit", "summary"]
    assert events[0]["command"] == "python manage.py migrate"
    assert events[1]["text"] == "out\n" and events[2]["base64"] == "//4="
    assert events[3]["exit_code"] == 3 and events[3]["error"] is None
    assert events[4]["exit_code"] == 3 and events[4]["counts"]["failed"] == 1
    assert all("time" in e for e in events)
    assert terminal.stderr_text == "oneoff: web1: waiting for lock 'db'\n"


# -- listing views ------------------------------------------------------------------------


def test_releases_table_marks_drift_against_the_common_release() -> None:
    records: list[dict[str, Any]] = [
        {"host": "web1", "release": "r1", "revision": "3f2c1a9e0b7d4c6a", "deployed_at": None,
         "path": "/srv/r1", "python": "3.11.7", "drift": False},
        {"host": "web2", "release": "r1", "revision": None, "deployed_at": None,
         "path": "/srv/r1", "python": None, "drift": False},
        {"host": "worker1", "release": "r2", "revision": "9a8b", "deployed_at": None,
         "path": "/srv/r2", "python": "3.11.7", "drift": True},
        {"host": "db1", "error": "connection refused", "hint": None},
    ]  # fmt: skip
    lines = views.releases_table(records).splitlines()
    assert lines[1].split() == ["web1", "r1", "3f2c1a9e0b7d", "?", "3.11.7", "/srv/r1"]
    assert lines[2].split() == ["web2", "r1", "-", "?", "?", "/srv/r1"]
    assert lines[3].split()[:3] == ["worker1", "r2", "*"]
    assert lines[4].split() == ["db1", "-", "error:", "connection", "refused"]
    assert lines[5] == "* not on r1 (run by 2 of 4 hosts)"


def test_table_aligns_columns_without_trailing_blanks() -> None:
    assert views.table([("A", "BB", "C"), ("long", "", "")]) == "A     BB  C\nlong"


def test_show_listing_prints_json_lines_or_the_table() -> None:
    terminal = FakeTerminal()
    records = [{"host": "web1", "address": "10.0.0.1", "groups": ["prod"], "roles": []}]
    views.show_listing(terminal, records, views.hosts_table, as_json=True)
    views.show_listing(terminal, records, views.hosts_table, as_json=False)
    first, *table = terminal.stdout_text.splitlines()
    assert json.loads(first)["groups"] == ["prod"]
    assert table[1].split() == ["web1", "10.0.0.1", "prod", "-"]
