"""Exit status and the words for a result, worked out in one place (docs/exit-status.md)."""

from __future__ import annotations

from typing import Any

import pytest

from oneoff.client.events import AgentEvent
from oneoff.client.reducer import Ending, RunReducer
from oneoff.errors import (
    AgentError,
    ConnectError,
    ConnectionLost,
    DriftRefused,
    ExitStatus,
    HostKeyError,
    InventoryError,
    LockBusy,
    NotStarted,
    OneoffError,
    ReleaseError,
    RunLost,
    SpawnError,
    UsageError,
)
from oneoff.outcome import (
    HostResult,
    category,
    describe,
    errors_exit,
    fleet_exit,
    host_exit,
    record_exit,
    record_outcome,
    summary_counts,
)


def ok(host: str = "h") -> HostResult:
    return HostResult(host=host, status=0)


def exited(status: int, host: str = "h") -> HostResult:
    return HostResult(host=host, status=status)


def failed(error: OneoffError, host: str = "h") -> HostResult:
    return HostResult(host=host, error=error)


def spawn(status: int) -> SpawnError:
    return SpawnError("cannot run nosuchcmd", host="h", status=status)


KILLED = HostResult(host="h", signal="SIGKILL", signal_number=9)
TIMED_OUT = HostResult(host="h", signal="SIGTERM", signal_number=15, timed_out=True)
INTERRUPTED = HostResult(host="h", signal="SIGINT", signal_number=2, interrupted=True)
LOCKED = failed(LockBusy("lock 'm' is busy", host="h"))
USAGE = failed(UsageError("unknown task 'x'", host="h"))
UNREACHABLE = failed(ConnectError("connection refused", host="h"))
BROKEN_RELEASE = failed(ReleaseError("current is dangling", host="h"))
LOST = failed(RunLost("lost", host="h"))
SKIPPED = failed(NotStarted("not started (an earlier host failed)", host="h"))


@pytest.mark.parametrize(
    ("result", "status"),
    [
        (ok(), 0),
        (exited(3), 3),
        (exited(255), 255),
        (KILLED, 137),
        (HostResult(host="h", signal="SIGTERM", signal_number=15), 143),
        (TIMED_OUT, ExitStatus.TIMED_OUT),
        (INTERRUPTED, ExitStatus.INTERRUPTED),
        (HostResult(host="h", status=1, interrupted=True), ExitStatus.INTERRUPTED),
        (LOCKED, ExitStatus.LOCK_BUSY),
        (USAGE, ExitStatus.USAGE),
        (failed(InventoryError("inv.yaml:3: hosts.web1.port: expected int")), 2),
        (failed(DriftRefused("hosts are on different releases")), 2),
        (UNREACHABLE, ExitStatus.CANNOT_RUN),
        (failed(HostKeyError("host key changed", host="h")), 255),
        (BROKEN_RELEASE, 255),
        (failed(AgentError("the agent did not start", host="h")), 255),
        (failed(spawn(127)), 127),
        (failed(spawn(126)), 126),
        (LOST, 255),
        (SKIPPED, ExitStatus.FAILED),
        (HostResult(host="h"), ExitStatus.CANNOT_RUN),  # no status, no signal: nothing known
    ],
)
def test_one_host_passes_its_status_through(result: HostResult, status: int) -> None:
    assert host_exit(result) == status
    assert result.exit_code == status
    assert fleet_exit([result]) == status


@pytest.mark.parametrize(
    ("results", "status"),
    [
        ([ok("a"), ok("b")], 0),
        ([ok("a"), exited(3, "b")], 1),
        ([exited(3, "a"), exited(3, "b")], 1),  # a shared command status is not passed
        ([ok("a"), KILLED], 1),
        ([TIMED_OUT, TIMED_OUT], 1),  # a timeout on several hosts is a failure like any
        ([ok("a"), USAGE, USAGE], 2),
        ([USAGE, failed(DriftRefused("drift"))], 2),
        ([ok("a"), LOCKED], 75),
        ([LOCKED, LOCKED], 75),
        ([ok("a"), UNREACHABLE, BROKEN_RELEASE], 255),
        ([LOST, UNREACHABLE], 255),
        ([failed(spawn(127)), failed(spawn(127))], 255),  # could not run, on several hosts
        ([ok("a"), INTERRUPTED], 130),
        ([INTERRUPTED, UNREACHABLE], 130),
        ([INTERRUPTED, SKIPPED], 130),
        ([LOCKED, exited(3)], 1),
        ([USAGE, UNREACHABLE], 1),  # nothing shared: not all usage, not all could-not-run
        ([exited(3), SKIPPED, SKIPPED], 1),  # fail-fast: the rest were not started
        ([UNREACHABLE, SKIPPED], 1),
    ],
)
def test_several_hosts_fold_into_0_1_or_what_every_failure_shares(
    results: list[HostResult], status: int
) -> None:
    assert fleet_exit(results) == status


def test_no_host_is_success() -> None:
    assert fleet_exit([]) == 0


@pytest.mark.parametrize(
    ("result", "ok_"),
    [
        (ok(), True),
        (exited(1), False),
        (HostResult(host="h", status=0, timed_out=True), False),
        (HostResult(host="h", status=0, error=NotStarted("x")), False),
        (HostResult(host="h", status=0, detached=True), True),
        (HostResult(host="h", status=0, plan={}), True),
        (KILLED, False),
    ],
)
def test_ok_means_no_error_status_zero_and_in_time(result: HostResult, ok_: bool) -> None:
    assert result.ok is ok_


@pytest.mark.parametrize(
    ("result", "words"),
    [
        (ok(), "exit 0"),
        (exited(3), "exit 3"),
        (KILLED, "killed by SIGKILL"),
        (TIMED_OUT, "timed out"),
        (INTERRUPTED, "interrupted"),
        (UNREACHABLE, "connection refused"),  # the message, without the host
        (LOCKED, "lock 'm' is busy"),
    ],
)
def test_describe(result: HostResult, words: str) -> None:
    assert describe(result) == words
    assert result.describe() == words


@pytest.mark.parametrize(
    ("result", "name"),
    [
        (ok(), "ok"),
        (exited(3), "failed"),
        (TIMED_OUT, "failed"),
        (LOCKED, "failed"),
        (USAGE, "failed"),
        (UNREACHABLE, "could_not_run"),
        (BROKEN_RELEASE, "could_not_run"),
        (failed(ConnectionLost("connection lost", host="h")), "could_not_run"),
        (LOST, "lost"),
        (SKIPPED, "not_started"),
    ],
)
def test_category(result: HostResult, name: str) -> None:
    assert category(result) == name


def test_summary_counts_every_category() -> None:
    results = [ok("a"), ok("b"), exited(3), LOST, UNREACHABLE, SKIPPED, SKIPPED]
    assert summary_counts(results) == {
        "ok": 2,
        "failed": 1,
        "lost": 1,
        "could_not_run": 1,
        "not_started": 2,
    }


def test_summary_counts_keep_the_old_keys_when_no_host_was_lost() -> None:
    assert summary_counts([]) == dict.fromkeys(("ok", "failed", "could_not_run", "not_started"), 0)
    assert summary_counts([ok(), UNREACHABLE]) == {
        "ok": 1,
        "failed": 0,
        "could_not_run": 1,
        "not_started": 0,
    }


@pytest.mark.parametrize(
    ("errors", "status"),
    [
        ([], 0),
        ([UsageError("unknown release"), UsageError("unknown release")], 2),
        ([LockBusy("busy")], 75),
        ([ConnectError("refused"), ReleaseError("dangling")], 255),
        ([ConnectError("refused"), UsageError("unknown release")], 255),
        ([spawn(127), spawn(127)], 127),
        ([spawn(127), spawn(126)], 255),
    ],
)
def test_errors_exit_for_listings(errors: list[OneoffError], status: int) -> None:
    assert errors_exit(errors) == status


@pytest.mark.parametrize(
    ("record", "status", "words"),
    [
        ({"state": "ended", "status": 0}, 0, "exit 0"),
        ({"state": "ended", "status": 3}, 3, "exit 3"),
        ({"state": "ended", "signal": "SIGKILL", "signal_number": 9}, 137, "killed by SIGKILL"),
        (
            {"state": "ended", "signal": "SIGTERM", "signal_number": 15, "timed_out": True},
            124,
            "timed out",
        ),
        (
            {"state": "ended", "signal": "SIGTERM", "signal_number": 15, "client_lost": True},
            143,
            "stopped (client lost)",
        ),
        ({"state": "lost", "status": 0}, 255, "lost"),
        ({"state": "running"}, 255, "running"),
        ({"state": "unfinished"}, 255, "unfinished"),
    ],
)
def test_records_fold_like_runs(record: dict[str, Any], status: int, words: str) -> None:
    assert record_exit(record) == status
    assert record_outcome(record) == words


@pytest.mark.parametrize(
    "outcome",
    [
        {"status": 0, "signal": None, "signal_number": None, "timed_out": False},
        {"status": 7, "signal": None, "signal_number": None, "timed_out": False},
        {"status": None, "signal": "SIGKILL", "signal_number": 9, "timed_out": False},
        {"status": None, "signal": "SIGTERM", "signal_number": 15, "timed_out": True},
    ],
    ids=["exit-0", "exit-7", "sigkill", "timed-out"],
)
def test_a_record_and_the_run_that_wrote_it_agree(outcome: dict[str, Any]) -> None:
    """The agent writes the same outcome to the exit event and to the record."""
    reducer = RunReducer("h")
    reducer.apply(AgentEvent("started"))
    reducer.apply(AgentEvent("exit", {**outcome, "client_lost": False}))
    result = reducer.verdict(HostResult(host="h"), Ending(synced=True, before_sync=""))
    record = {**outcome, "state": "ended", "client_lost": False}
    assert record_exit(record) == host_exit(result)
    assert record_outcome(record) == describe(result)
