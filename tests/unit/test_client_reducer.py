"""The agent's events folded into one host's verdict: every ending, no channel, no threads."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from oneoff.client.events import AgentEvent
from oneoff.client.reducer import Ending, RunReducer, agent_error, lock_message, lost
from oneoff.errors import (
    AgentError,
    CannotRun,
    ConnectionLost,
    ExitStatus,
    LockBusy,
    OneoffError,
    ReleaseError,
    RunLost,
    SpawnError,
)
from oneoff.outcome import HostResult, category, host_exit

HOST = "web1"
RAN = HostResult(host=HOST, display="python manage.py migrate", run_id="r1", release_id="rel7")
SYNCED = Ending(synced=True, before_sync="")
HOLDER = {
    "operator": {"user": "alice", "machine": "laptop"},
    "since": "2026-11-29T21:47:08Z",
    "run_id": "20261129T214708Z-5837b4",
    "command": "python manage.py migrate --noinput",
}


def exit_event(**fields: Any) -> AgentEvent:
    base: dict[str, Any] = {
        "status": 0,
        "signal": None,
        "signal_number": None,
        "timed_out": False,
        "client_lost": False,
    }
    return AgentEvent("exit", {**base, **fields})


def fold(*events: AgentEvent, ending: Ending = SYNCED) -> HostResult:
    reducer = RunReducer(HOST)
    for event in events:
        reducer.apply(event)
    return reducer.verdict(RAN, ending)


def refused(*events: AgentEvent, ending: Ending = SYNCED) -> OneoffError:
    with pytest.raises(OneoffError) as caught:
        fold(*events, ending=ending)
    return caught.value


def test_an_exit_status_passes_through_with_what_the_session_knew() -> None:
    result = fold(AgentEvent("started"), exit_event(status=3))
    assert (result.status, result.error, result.signal) == (3, None, None)
    assert (result.run_id, result.release_id, result.display) == (
        "r1",
        "rel7",
        "python manage.py migrate",
    )
    assert host_exit(result) == 3
    assert not result.ok


def test_exit_zero_is_ok() -> None:
    result = fold(AgentEvent("started"), exit_event(status=0))
    assert result.ok
    assert host_exit(result) == 0


def test_a_signal_is_128_plus_its_number() -> None:
    result = fold(exit_event(status=None, signal="SIGKILL", signal_number=9))
    assert (result.status, result.signal, result.signal_number) == (None, "SIGKILL", 9)
    assert host_exit(result) == 137
    assert result.describe() == "killed by SIGKILL"


def test_timed_out_is_124_even_though_a_signal_stopped_it() -> None:
    result = fold(exit_event(status=None, signal="SIGTERM", signal_number=15, timed_out=True))
    assert result.timed_out
    assert host_exit(result) == ExitStatus.TIMED_OUT
    assert result.describe() == "timed out"


def test_interrupted_and_not_exiting_zero_is_130() -> None:
    ending = Ending(synced=True, before_sync="", interrupted=True)
    result = fold(exit_event(status=None, signal="SIGINT", signal_number=2), ending=ending)
    assert result.interrupted
    assert host_exit(result) == ExitStatus.INTERRUPTED


def test_interrupted_but_exiting_zero_is_zero() -> None:
    ending = Ending(synced=True, before_sync="", interrupted=True)
    result = fold(exit_event(status=0), ending=ending)
    assert not result.interrupted
    assert host_exit(result) == 0


def test_a_plan_is_a_zero_result_carrying_the_plan() -> None:
    plan = {"cwd": "/srv/shop/releases/rel7", "extra_env_keys": ["TOKEN"]}
    result = fold(AgentEvent("plan", plan))
    assert (result.status, result.plan) == (0, plan)
    assert result.ok


def test_detached_is_zero_and_marked() -> None:
    result = fold(AgentEvent("detached", {"run_id": "r1", "pid": 77}))
    assert (result.status, result.detached, result.ok) == (0, True, True)


def test_a_closed_stdout_reads_as_killed_by_sigpipe() -> None:
    ending = Ending(synced=True, before_sync="", output_closed=True)
    result = fold(exit_event(status=None, signal="SIGTERM", signal_number=15), ending=ending)
    assert (result.signal, result.signal_number) == ("SIGPIPE", int(signal.SIGPIPE))
    assert host_exit(result) == 128 + int(signal.SIGPIPE)


def test_lock_wait_is_a_notice_naming_the_holder() -> None:
    reducer = RunReducer(HOST)
    notice = reducer.apply(AgentEvent("lock_wait", {"lock": "migrate", "holder": HOLDER}))
    assert notice == (
        "waiting for lock 'migrate' (held by alice@laptop since 2026-11-29T21:47:08Z, "
        "run 20261129T214708Z-5837b4: python manage.py migrate --noinput)"
    )
    assert reducer.failure is None


def test_lock_busy_is_75_and_says_who_holds_it() -> None:
    error = refused(AgentEvent("lock_busy", {"lock": "migrate", "holder": HOLDER}))
    assert isinstance(error, LockBusy)
    assert error.exit_status == ExitStatus.LOCK_BUSY
    assert int(error.exit_status) == 75
    assert error.host == HOST
    assert error.message.startswith("lock 'migrate' is busy (held by alice@laptop")
    assert "--lock-wait" in (error.hint or "")


def test_an_unknown_holder_is_said_so() -> None:
    assert lock_message({"lock": "x"}, waiting=False) == (
        "lock 'x' is busy (held by unknown since ?, run ?: ?)"
    )


def test_a_failure_wins_over_a_later_exit() -> None:
    error = refused(AgentEvent("lock_busy", {"lock": "m", "holder": HOLDER}), exit_event(status=0))
    assert isinstance(error, LockBusy)


def test_an_env_file_error_is_a_release_error_that_shows_no_value() -> None:
    event = AgentEvent(
        "error", {"kind": "env_file", "message": "/srv/shop/shared/.env:3: unterminated quote"}
    )
    error = refused(AgentEvent("started"), event)
    assert isinstance(error, ReleaseError)
    assert error.message == "env file /srv/shop/shared/.env:3: unterminated quote"
    assert error.exit_status == ExitStatus.CANNOT_RUN


@pytest.mark.parametrize(("status", "expected"), [(None, 127), (127, 127), (126, 126)])
def test_a_spawn_error_has_the_shells_status(status: int | None, expected: int) -> None:
    fields: dict[str, Any] = {"kind": "spawn", "message": "cannot run nosuchcmd: not found"}
    if status is not None:
        fields["status"] = status
    error = refused(AgentEvent("error", fields))
    assert isinstance(error, SpawnError)
    assert error.exit_status == expected
    assert host_exit(HostResult(host=HOST, error=error)) == expected


def test_a_state_dir_error_hints_at_the_lock_only_when_there_is_one() -> None:
    with_lock = agent_error(HOST, {"kind": "state_dir", "message": "cannot write", "lock": "m"})
    without = agent_error(HOST, {"kind": "state_dir", "message": "cannot write"})
    assert isinstance(with_lock, ReleaseError)
    assert "(a lock lives there)" in (with_lock.hint or "")
    assert "--no-audit" in (without.hint or "")
    assert "--no-audit" not in (with_lock.hint or "")


def test_any_other_agent_error_is_an_agent_error() -> None:
    error = agent_error(HOST, {"kind": "agent", "message": "agent failed at line 9: KeyError"})
    assert type(error) is AgentError
    assert error.message == "agent failed at line 9: KeyError"


def test_an_agent_that_never_synced_is_named_by_the_shells_last_line() -> None:
    ending = Ending(
        synced=False,
        before_sync="Welcome\n/srv/shop/.venv/bin/python: No such file or directory",
        exit_status=127,
    )
    error = refused(ending=ending)
    assert type(error) is AgentError
    assert error.message == (
        "the agent did not start: /srv/shop/.venv/bin/python: No such file or directory"
    )


def test_an_agent_that_never_synced_silently_is_named_by_the_exit_status() -> None:
    error = refused(ending=Ending(synced=False, before_sync="", exit_status=97))
    assert isinstance(error, AgentError)
    assert error.message == "the agent did not start: exit status 97"


def test_no_outcome_after_started_is_lost_not_could_not_run() -> None:
    error = refused(AgentEvent("started", {"pid": 1}))
    assert isinstance(error, RunLost)
    assert error.host == HOST
    assert "outcome is unknown" in error.message
    assert f"oneoff audit -H {HOST}" in (error.hint or "")
    assert category(HostResult(host=HOST, error=error)) == "lost"


def test_no_outcome_before_started_after_an_interrupt_is_connection_lost() -> None:
    error = refused(ending=Ending(synced=True, before_sync="", interrupted=True))
    assert type(error) is ConnectionLost
    assert category(HostResult(host=HOST, error=error)) == "could_not_run"


def test_no_outcome_and_nothing_started_is_an_agent_error_with_the_noise() -> None:
    error = refused(ending=Ending(synced=True, before_sync="motd\nsomething odd"))
    assert type(error) is AgentError
    assert error.message == "the agent ended without reporting an exit status: something odd"
    assert refused().message == "the agent ended without reporting an exit status"


def test_client_lost_is_lost() -> None:
    error = refused(
        AgentEvent("started"), exit_event(status=None, signal="SIGTERM", client_lost=True)
    )
    assert isinstance(error, RunLost)
    assert category(HostResult(host=HOST, error=error)) == "lost"


def test_lost_is_a_connection_lost_that_cannot_run() -> None:
    error = lost(HOST, "connection lost")
    assert isinstance(error, ConnectionLost)
    assert isinstance(error, CannotRun)
    assert error.message == (
        "connection lost; the command had started and its outcome is unknown here"
    )


def test_settled_once_an_exit_or_a_plan_came() -> None:
    reducer = RunReducer(HOST)
    reducer.apply(AgentEvent("started"))
    assert reducer.started
    assert not reducer.settled
    reducer.apply(exit_event())
    assert reducer.settled
    planned = RunReducer(HOST)
    planned.apply(AgentEvent("plan", {}))
    assert planned.settled


def test_events_other_than_lock_wait_say_nothing_now() -> None:
    reducer = RunReducer(HOST)
    for event in (
        AgentEvent("started"),
        AgentEvent("lock_busy", {"lock": "m"}),
        AgentEvent("error", {"kind": "agent"}),
        AgentEvent("future_event"),
        exit_event(),
    ):
        assert reducer.apply(event) is None
