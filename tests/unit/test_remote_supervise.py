"""The supervisor's decisions, without a command: timers, stop escalation, stdin, output."""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from oneoff.remote.fdio import BUFFER_LIMIT, Outbox
from oneoff.remote.protocol import STDERR, STDOUT, FrameReader
from oneoff.remote.state import TimestampedLog
from oneoff.remote.supervise import (
    CLIENT_SIGNALS,
    Command,
    CommandOutput,
    Escalation,
    Heartbeats,
    StdinRelay,
    Timeout,
    describe_exit,
    wait_ms,
)

# -- timers ----------------------------------------------------------------------


def test_wait_is_until_the_soonest_timer_plus_a_millisecond() -> None:
    assert wait_ms(100.0, [105.0, None, 100.25, None]) == 251


def test_a_timer_already_past_means_no_wait() -> None:
    assert wait_ms(100.0, [90.0, 200.0]) == 0


def test_heartbeats_are_half_the_alive_interval_and_silence_is_interval_times_count() -> None:
    beats = Heartbeats(10.0, 3, now=0.0)
    assert beats.every == 5.0
    assert beats.timeout == 30.0


def test_heartbeats_are_never_more_often_than_every_200ms() -> None:
    assert Heartbeats(0.1, 3, now=0.0).every == 0.2


def test_with_keepalives_off_the_client_is_never_silent_too_long() -> None:
    beats = Heartbeats(0.0, 3, now=0.0)
    assert beats.every == 30.0
    assert not beats.silent(1e9)
    assert beats.silence_timer(50.0) == 50.0 + 3600  # the loop still wakes hourly


def test_heartbeat_settings_come_from_the_spec_with_its_defaults() -> None:
    assert Heartbeats.from_spec({}, now=0.0).timeout == 30.0
    assert Heartbeats.from_spec({"alive_interval": 2, "alive_count_max": None}, 0.0).timeout == 6
    assert Heartbeats.from_spec({"alive_interval": 2, "alive_count_max": 5}, 0.0).timeout == 10


def test_the_client_is_silent_only_after_more_than_the_timeout() -> None:
    beats = Heartbeats(1.0, 3, now=100.0)
    assert not beats.silent(103.0)
    assert beats.silent(103.01)
    beats.heard(103.0)
    assert not beats.silent(105.0)
    assert beats.silence_timer(104.0) == 106.0


def test_a_heartbeat_is_due_when_nothing_was_written_for_its_interval() -> None:
    beats = Heartbeats(2.0, 3, now=0.0)
    assert beats.beat_due(1.0)  # never wrote anything
    beats.wrote(10.0)
    assert not beats.beat_due(10.9)
    assert beats.beat_due(11.0)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sent() -> list[int]:
    return []


@pytest.fixture
def stop(sent: list[int]) -> Escalation:
    return Escalation(sent.append, kill_after=10.0, clock=_Clock())


def test_a_stop_signals_at_once_and_schedules_sigkill(stop: Escalation, sent: list[int]) -> None:
    stop.begin("timeout", signal.SIGTERM)
    assert sent == [signal.SIGTERM]
    assert stop.reason == "timeout"
    assert stop.kill_at == 1010.0
    stop.escalate(1009.9)
    assert sent == [signal.SIGTERM]
    stop.escalate(1010.0)
    assert sent == [signal.SIGTERM, signal.SIGKILL]
    assert stop.kill_at is None
    stop.escalate(2000.0)
    assert sent == [signal.SIGTERM, signal.SIGKILL]  # once


def test_the_first_reason_is_kept_and_a_second_stop_keeps_the_kill_time(
    stop: Escalation, sent: list[int]
) -> None:
    stop.begin("client sent SIGINT", signal.SIGINT)
    assert isinstance(stop.clock, _Clock)
    stop.clock.now += 5
    stop.begin("agent got signal 15", signal.SIGTERM)
    assert stop.reason == "client sent SIGINT"
    assert sent == [signal.SIGINT, signal.SIGTERM]
    assert stop.kill_at == 1010.0  # not pushed back by the second stop


def test_a_sigkill_stop_leaves_nothing_to_escalate(stop: Escalation, sent: list[int]) -> None:
    stop.begin("client sent SIGINT", signal.SIGINT)
    stop.begin("client sent SIGKILL", signal.SIGKILL)
    assert stop.kill_at is None
    stop.escalate(5000.0)
    assert sent == [signal.SIGINT, signal.SIGKILL]


def test_no_timeout_means_no_timer_and_never_expires() -> None:
    timeout = Timeout(None)
    assert timeout.timer() is None
    assert not timeout.expire(1e12, running=True)


def test_a_timeout_expires_once_at_its_deadline() -> None:
    timeout = Timeout(50.0)
    assert timeout.timer() == 50.0
    assert not timeout.expire(49.99, running=True)
    assert timeout.expire(50.0, running=True)
    assert timeout.timed_out
    assert timeout.timer() is None
    assert not timeout.expire(60.0, running=True)


def test_a_command_that_already_exited_is_not_timed_out() -> None:
    timeout = Timeout(50.0)
    assert not timeout.expire(60.0, running=False)
    assert not timeout.timed_out


def test_an_exit_status_is_reported_as_a_status() -> None:
    assert describe_exit(3, False, False, None) == {
        "status": 3,
        "signal": None,
        "signal_number": None,
        "timed_out": False,
        "client_lost": False,
    }


def test_a_death_by_signal_is_reported_by_name_with_why_it_was_stopped() -> None:
    assert describe_exit(-15, True, False, "timeout") == {
        "status": None,
        "signal": "SIGTERM",
        "signal_number": 15,
        "timed_out": True,
        "client_lost": False,
        "stop_reason": "timeout",
    }


def test_a_client_may_send_only_the_stopping_signals() -> None:
    assert sorted(CLIENT_SIGNALS) == ["HUP", "INT", "KILL", "QUIT", "TERM"]
    assert all(getattr(signal, "SIG" + name) == num for name, num in CLIENT_SIGNALS.items())


# -- stdin relay -----------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    os.set_blocking(w, False)
    os.set_blocking(r, False)
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):  # a test may have closed it
            os.close(fd)


def test_stdin_is_relayed_in_order(pipe: tuple[int, int]) -> None:
    r, w = pipe
    relay = StdinRelay(w, pty=False)
    assert not relay.wants_write()
    relay.feed(b"abc")
    relay.feed(b"def")
    assert relay.wants_write()
    relay.on_writable()
    assert os.read(r, 100) == b"abcdef"
    assert not relay.wants_write()


def test_end_of_stdin_closes_the_pipe_once_everything_is_written(pipe: tuple[int, int]) -> None:
    r, w = pipe
    relay = StdinRelay(w, pty=False)
    relay.feed(b"last")
    relay.end()
    relay.feed(b"too late")  # after the end: dropped
    relay.on_writable()
    assert relay.fd is None
    assert os.read(r, 100) == b"last"
    assert os.read(r, 100) == b""  # EOF: the command sees its stdin end


def test_end_of_stdin_on_a_pty_is_a_control_d_and_the_master_stays_open(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    relay = StdinRelay(w, pty=True)
    relay.feed(b"print(1)\n")
    relay.end()
    relay.on_writable()
    assert os.read(r, 100) == b"print(1)\n\x04"
    assert relay.fd == w
    assert not relay.wants_write()


def test_stdin_is_full_at_the_buffer_limit() -> None:
    relay = StdinRelay(None, pty=False)
    relay.feed(b"x" * (BUFFER_LIMIT - 1))
    assert not relay.full()
    relay.feed(b"x")
    assert relay.full()


def test_a_full_pipe_keeps_the_rest_for_later(pipe: tuple[int, int]) -> None:
    r, w = pipe
    relay = StdinRelay(w, pty=False)
    relay.feed(b"x" * (BUFFER_LIMIT - 1))
    relay.on_writable()
    assert 0 < len(relay.buf) < BUFFER_LIMIT - 1  # a pipe holds far less than 1 MiB
    held = len(relay.buf)
    while _read_some(r):  # the command reads
        pass
    relay.on_writable()
    assert len(relay.buf) < held


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


def test_a_command_that_closed_its_stdin_gets_nothing_more(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.close(r)
    relay = StdinRelay(w, pty=False)
    relay.feed(b"unread")
    relay.on_writable()  # EPIPE (Python ignores SIGPIPE)
    assert relay.buf == b""
    assert relay.eof
    assert relay.fd is None  # and the pipe is closed


# -- command output --------------------------------------------------------------


class _FakeChild:
    pid = 0


def _command(out_fd: int | None, err_fd: int | None, master: int | None = None) -> Command:
    return Command(_FakeChild(), out_fd, err_fd, None, master)  # type: ignore[arg-type]


def test_stderr_goes_to_the_client_as_e_frames(pipe: tuple[int, int]) -> None:
    r, w = pipe
    outbox = Outbox(-1)
    output = CommandOutput(_command(None, r), outbox, None)
    os.write(w, b"warning\n")
    output.on_ready(r, select.POLLIN)
    assert FrameReader().feed(bytes(outbox.buf)) == [(STDERR, b"warning\n")]


def test_pty_output_goes_to_the_client_as_o_frames(pipe: tuple[int, int]) -> None:
    r, w = pipe
    outbox = Outbox(-1)
    output = CommandOutput(_command(r, None, master=r), outbox, None)
    os.write(w, b">>> ")
    output.on_ready(r, select.POLLIN)
    assert FrameReader().feed(bytes(outbox.buf)) == [(STDOUT, b">>> ")]


def test_the_end_of_stderr_closes_it_and_it_is_watched_no_more(pipe: tuple[int, int]) -> None:
    r, w = pipe
    output = CommandOutput(_command(None, r), Outbox(-1), None)
    registered: dict[int, int] = {}
    output.watch(registered)
    assert registered == {r: select.POLLIN}
    os.close(w)
    output.on_ready(r, select.POLLHUP)
    assert output.open == []
    with pytest.raises(OSError):
        os.fstat(r)  # closed
    registered = {}
    output.watch(registered)
    assert registered == {}


def test_the_end_of_pty_output_leaves_the_master_open_for_last(pipe: tuple[int, int]) -> None:
    r, w = pipe
    output = CommandOutput(_command(r, None, master=r), Outbox(-1), None)
    os.close(w)
    output.on_ready(r, select.POLLHUP)
    assert output.open == []
    os.fstat(r)  # still open


def test_a_wake_up_with_nothing_to_read_changes_nothing(pipe: tuple[int, int]) -> None:
    r, _ = pipe
    outbox = Outbox(-1)
    output = CommandOutput(_command(None, r), outbox, None)
    output.on_ready(r, select.POLLIN)
    assert output.open == [r]
    assert outbox.buf == b""


def test_a_detached_runs_output_goes_to_its_log_by_stream(tmp_path: Path) -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    log = TimestampedLog(str(tmp_path / "r.log"))
    outbox = Outbox(-1)
    outbox.detached = True
    output = CommandOutput(_command(out_r, err_r), outbox, log)
    os.write(out_w, b"done\n")
    os.write(err_w, b"careful\n")
    output.on_ready(out_r, select.POLLIN)
    output.on_ready(err_r, select.POLLIN)
    log.close()
    for fd in (out_r, out_w, err_r, err_w):
        os.close(fd)
    lines = [line.split(b" ", 1)[1] for line in (tmp_path / "r.log").read_bytes().splitlines()]
    assert lines == [b"o done", b"e careful"]
    assert outbox.buf == b""


def test_a_detached_outbox_drops_what_is_sent() -> None:
    outbox = Outbox(-1)
    outbox.event("started", pid=1)
    assert len(outbox) > 0
    outbox.clear()
    outbox.detached = True
    outbox.event("exit", status=0)
    assert len(outbox) == 0
