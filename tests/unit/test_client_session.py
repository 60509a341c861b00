"""A whole Session.run over the scripted transport: probe, spec, frames, verdict.

The fake host answers the run script with what a real one sends: the probe's
``key=value`` lines and its end marker on stdout (then the command's own stdout), and
on stderr whatever a login shell printed, the sync marker and the agent's frames. The
fake serves both in 7-byte pieces, so every reader is exercised against split data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from oneoff.client.journal import LocalJournal
from oneoff.client.session import Session
from oneoff.errors import (
    AgentError,
    AuthFailed,
    CannotRun,
    ConnectionLost,
    ExitStatus,
    LockBusy,
    NotStarted,
    ReleaseError,
    RunLost,
)
from oneoff.outcome import HostResult, category, host_exit
from oneoff.plan.probe import END_MARKER, ProbeRequest, ResolvedRelease
from oneoff.remote import protocol as proto
from oneoff.transport.fake import Answer, FakeHost, FakeProcess, FakeTransport
from oneoff.values import Masked, RunSpec

HOST = "web1"
RELEASE_ID = "20261128T120000"
REVISION = "9fceb02d0ae598e95dc970b74767f19372d61af8"
SECRET = "hunter2-do-not-leak"
ARGV = ("python", "manage.py", "migrate", "--noinput")
REQUEST = ProbeRequest(app_root="/srv/shop")
EXITED_OK = {"status": 0, "signal": None, "signal_number": None, "timed_out": False}


def probe_stdout(release_id: str = RELEASE_ID, revision: str = REVISION) -> bytes:
    rel = f"/srv/shop/releases/{release_id}"
    lines = [
        "app_root=/srv/shop",
        f"env_file={rel}/.env",
        f"release={rel}",
        f"release_id={release_id}",
        f"venv={rel}/.venv",
        f"python={rel}/.venv/bin/python",
        f"revision={revision}",
        "deployed_at=1764331200",
    ]
    return "".join(line + "\n" for line in lines).encode() + END_MARKER


def probe_on_a_piece_boundary() -> bytes:
    """The probe's answer padded (an unknown key, ignored) to end where a 7-byte piece ends."""
    probe = probe_stdout()
    short = -len(probe) % 7
    length = short if short >= 5 else short + 7  # "pad=" and a newline at least
    padded = probe[: -len(END_MARKER)] + b"pad=" + b"#" * (length - 5) + b"\n" + END_MARKER
    assert len(padded) % 7 == 0
    return padded


def agent_stderr(*frames: bytes, noise: bytes = b"Welcome to web1\n") -> bytes:
    return noise + proto.SYNC + b"".join(frames)


def exited(**fields: Any) -> bytes:
    return proto.encode_event("exit", **{**EXITED_OK, "client_lost": False, **fields})


def started() -> bytes:
    return proto.encode_event("started", pid=4242, run_id="r1")


@dataclass
class Recorder:
    """A Reporter that keeps every call, in order (thread-safe enough: list.append)."""

    calls: list[tuple[str, Any]] = field(default_factory=list)

    def started(self, host: str, release: ResolvedRelease, spec: RunSpec) -> None:
        self.calls.append(("started", (host, release, spec)))

    def output(self, host: str, stream: str, data: bytes) -> None:
        self.calls.append(("output", (host, stream, data)))

    def notice(self, host: str, message: str) -> None:
        self.calls.append(("notice", (host, message)))

    def finished(self, result: HostResult) -> None:
        self.calls.append(("finished", result))

    def stream(self, name: str) -> bytes:
        return b"".join(a[2] for kind, a in self.calls if kind == "output" and a[1] == name)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]

    def notices(self) -> list[str]:
        return [a[1] for kind, a in self.calls if kind == "notice"]


def make_spec(release: ResolvedRelease, **changes: Any) -> RunSpec:
    values: dict[str, Any] = {
        "host": HOST,
        "run_id": "r1",
        "argv": ARGV,
        "display": " ".join(ARGV),
        "release_path": release.path,
        "release_id": release.release_id,
        "revision": release.revision,
        "venv": release.venv,
        "env_files": release.env_files,
        "state_dir": "/srv/shop/shared/oneoff",
        "extra_env": Masked({"API_TOKEN": SECRET}),
        "operator": {"user": "alice", "machine": "laptop"},
    }
    return RunSpec(**{**values, **changes})


def frames_sent(fake: FakeHost) -> list[tuple[bytes, bytes]]:
    """Each send is one whole frame: (kind, payload) in the order sent."""
    out = []
    for data in fake.sent:
        kind, size = proto.FRAME.unpack_from(data)
        assert len(data) == proto.FRAME.size + size, "a send carries exactly one frame"
        out.append((kind, data[proto.FRAME.size :]))
    return out


def spec_frames(fake: FakeHost) -> list[dict[str, Any]]:
    return [json.loads(payload) for kind, payload in frames_sent(fake) if kind == proto.SPEC]


@dataclass
class Run:
    fake: FakeHost
    reporter: Recorder
    result: HostResult


def run_session(
    answer: Answer,
    *,
    spec_changes: dict[str, Any] | None = None,
    transport: type[FakeTransport] = FakeTransport,
    before: bool = False,
    on_release: bool = False,
    journal: LocalJournal | None = None,
    reporter: Recorder | None = None,
) -> Run:
    fake = FakeHost(HOST, [answer])
    reporter = reporter or Recorder()
    chosen = transport(fake)
    session = Session(
        HOST,
        lambda: chosen,
        reporter,
        alive_interval=10.0,
        alive_count_max=3,
        journal=journal,
    )
    if before:
        session.interrupt()

    def ctrl_c_during_probe(release: ResolvedRelease) -> None:
        session.interrupt()

    result = session.run(
        REQUEST,
        lambda release: make_spec(release, **(spec_changes or {})),
        on_release=ctrl_c_during_probe if on_release else None,
    )
    return Run(fake, reporter, result)


COMMAND_STDOUT = b"Applying shop.0042_orders... OK\n\x00\xff binary \r\n" * 9


def test_a_run_returns_the_release_and_the_status() -> None:
    run = run_session(
        Answer(
            stdout=probe_stdout() + COMMAND_STDOUT,
            stderr=agent_stderr(started(), proto.encode_frame(proto.STDERR, b"w\n"), exited()),
        )
    )
    result = run.result
    assert result.error is None
    assert (result.host, result.status, result.ok) == (HOST, 0, True)
    assert (result.release_id, result.revision) == (RELEASE_ID, REVISION)
    assert (result.run_id, result.display) == ("r1", "python manage.py migrate --noinput")
    assert result.duration >= 0


@pytest.mark.parametrize("early", [True, False], ids=["with-early-bytes", "piece-aligned"])
def test_the_commands_stdout_reaches_the_reporter_byte_for_byte(early: bool) -> None:
    # with-early-bytes: the first stdout bytes come in the piece that ends the probe
    probe = probe_stdout() if early else probe_on_a_piece_boundary()
    assert (len(probe) % 7 != 0) is early
    run = run_session(
        Answer(
            stdout=probe + COMMAND_STDOUT,
            stderr=agent_stderr(
                started(),
                proto.encode_frame(proto.STDERR, b"warn 1\n"),
                proto.encode_frame(proto.ALIVE),
                proto.encode_frame(proto.STDERR, b"warn 2\n"),
                exited(),
            ),
        )
    )
    assert run.reporter.stream("stdout") == COMMAND_STDOUT
    assert run.reporter.stream("stderr") == b"warn 1\nwarn 2\n"
    kinds = run.reporter.kinds()
    assert kinds[0] == "started"
    assert kinds[-1] == "finished"
    assert kinds.count("finished") == 1
    assert run.reporter.calls[-1][1] is run.result


def test_an_exit_status_and_a_signal_pass_through() -> None:
    status = run_session(
        Answer(stdout=probe_stdout(), stderr=agent_stderr(started(), exited(status=3)))
    )
    assert (status.result.status, host_exit(status.result)) == (3, 3)
    killed = run_session(
        Answer(
            stdout=probe_stdout(),
            stderr=agent_stderr(started(), exited(status=None, signal="SIGTERM", signal_number=15)),
        )
    )
    assert (killed.result.signal, host_exit(killed.result)) == ("SIGTERM", 143)


def test_the_spec_frame_carries_the_argv_after_the_agent_source() -> None:
    run = run_session(Answer(stdout=probe_stdout(), stderr=agent_stderr(started(), exited())))
    frames = frames_sent(run.fake)
    assert frames[0][0] == b"A"  # the agent's source, read by BOOT
    assert frames[1][0] == proto.SPEC
    (spec,) = spec_frames(run.fake)
    assert spec["argv"] == list(ARGV)
    assert spec["protocol"] == proto.PROTOCOL_VERSION
    assert spec["release"] == f"/srv/shop/releases/{RELEASE_ID}"
    assert spec["release_id"] == RELEASE_ID
    assert spec["extra_env"] == {"API_TOKEN": SECRET}
    assert (proto.STDIN_EOF, b"") in frames  # no stdin to forward: EOF at once
    # one script on the host: the probe in run mode, which execs the agent's BOOT
    (script,) = run.fake.scripts
    assert "mode=run" in script
    assert 'exec "$py"' in script


def test_the_secret_travels_only_in_the_spec_frame() -> None:
    run = run_session(Answer(stdout=probe_stdout(), stderr=agent_stderr(started(), exited())))
    secret = SECRET.encode()
    carriers = [kind for kind, payload in frames_sent(run.fake) if secret in payload]
    assert carriers == [proto.SPEC]
    assert not any(SECRET in script for script in run.fake.scripts)
    assert SECRET not in repr(run.reporter.calls)
    assert SECRET not in repr(run.result)


def test_the_keys_fingerprint_joins_the_operator() -> None:
    class Keyed(FakeTransport):
        def key_fingerprint(self) -> str | None:
            return "SHA256:abcdef"

    answer = Answer(stdout=probe_stdout(), stderr=agent_stderr(started(), exited()))
    run = run_session(answer, transport=Keyed)
    (spec,) = spec_frames(run.fake)
    assert spec["operator"] == {"user": "alice", "machine": "laptop", "key": "SHA256:abcdef"}


def test_an_interrupt_before_the_spec_is_sent_starts_nothing() -> None:
    run = run_session(
        Answer(stdout=probe_stdout(), stderr=agent_stderr(started(), exited())), before=True
    )
    assert isinstance(run.result.error, NotStarted)
    assert category(run.result) == "not_started"
    assert run.result.release_id == RELEASE_ID  # the probe did answer
    assert spec_frames(run.fake) == []
    assert [kind for kind, _ in frames_sent(run.fake)] == [b"A"]
    assert run.reporter.kinds() == ["finished"]


def test_ctrl_c_while_the_probe_answers_starts_nothing() -> None:
    run = run_session(
        Answer(stdout=probe_stdout(), stderr=agent_stderr(started(), exited())), on_release=True
    )
    assert isinstance(run.result.error, NotStarted)
    assert spec_frames(run.fake) == []


def test_a_probe_error_is_the_release_error_and_no_spec_is_sent() -> None:
    probe = b"app_root=/srv/shop\nerror=current_dangling\npath=/srv/shop/current\n"
    probe += b"detail=releases/gone\n" + END_MARKER
    run = run_session(Answer(stdout=probe, stderr=b""))
    error = run.result.error
    assert isinstance(error, ReleaseError)
    assert error.message == "/srv/shop/current is a dangling symlink (-> releases/gone)"
    assert host_exit(run.result) == ExitStatus.CANNOT_RUN
    assert run.result.release_id is None
    assert spec_frames(run.fake) == []


def test_a_script_that_dies_before_the_marker_names_its_last_stderr_line() -> None:
    run = run_session(
        Answer(
            stdout=b"app_root=/srv/shop\n",
            stderr=b"noise\nsh: 12: cd: can't cd to /srv/shop/releases/x\n",
            exit_status=97,
        )
    )
    error = run.result.error
    assert isinstance(error, AgentError)
    assert error.message == (
        "the remote script ended early: sh: 12: cd: can't cd to /srv/shop/releases/x"
    )


def test_an_agent_that_never_synced_names_the_shells_last_line() -> None:
    run = run_session(
        Answer(
            stdout=probe_stdout(),
            stderr=b"Welcome\n/srv/shop/.venv/bin/python: error while loading shared libraries\n",
            exit_status=127,
        )
    )
    error = run.result.error
    assert type(error) is AgentError
    assert error.message == (
        "the agent did not start: /srv/shop/.venv/bin/python: error while loading shared libraries"
    )
    assert run.result.release_id == RELEASE_ID
    assert run.result.run_id == "r1"


def test_a_channel_that_ends_after_started_is_lost() -> None:
    run = run_session(
        Answer(
            stdout=probe_stdout() + b"half of the output",
            stderr=agent_stderr(started()),
            exit_status=None,
        )
    )
    assert isinstance(run.result.error, RunLost)
    assert category(run.result) == "lost"
    assert run.reporter.stream("stdout") == b"half of the output"


def test_client_lost_reported_by_the_agent_is_lost() -> None:
    run = run_session(
        Answer(
            stdout=probe_stdout(),
            stderr=agent_stderr(started(), exited(status=None, signal="SIGTERM", client_lost=True)),
        )
    )
    assert isinstance(run.result.error, RunLost)


def test_lock_wait_is_a_notice_and_lock_busy_is_75() -> None:
    holder = {"operator": {"user": "bob"}, "since": "t0", "run_id": "r0", "command": "migrate"}
    run = run_session(
        Answer(
            stdout=probe_stdout(),
            stderr=agent_stderr(
                proto.encode_event("lock_wait", lock="migrate", holder=holder),
                proto.encode_event("lock_busy", lock="migrate", holder=holder, waited=5),
            ),
            exit_status=75,
        )
    )
    assert isinstance(run.result.error, LockBusy)
    assert host_exit(run.result) == 75
    assert run.reporter.notices() == [
        "waiting for lock 'migrate' (held by bob since t0, run r0: migrate)"
    ]


def test_a_spawn_error_is_127() -> None:
    error = proto.encode_event("error", kind="spawn", message="cannot run nosuchcmd", status=127)
    run = run_session(Answer(stdout=probe_stdout(), stderr=agent_stderr(error), exit_status=127))
    assert host_exit(run.result) == 127


def test_a_dry_run_comes_back_as_its_plan() -> None:
    plan = proto.encode_event("plan", cwd="/srv/shop/releases/x", extra_env_keys=["API_TOKEN"])
    run = run_session(
        Answer(stdout=probe_stdout(), stderr=agent_stderr(plan)), spec_changes={"mode": "plan"}
    )
    assert run.result.plan == {"cwd": "/srv/shop/releases/x", "extra_env_keys": ["API_TOKEN"]}
    assert run.result.ok
    (spec,) = spec_frames(run.fake)
    assert spec["mode"] == "plan"


def test_a_login_failure_is_the_result_not_a_raise() -> None:
    fake = FakeHost(HOST, connect_error=AuthFailed("permission denied (publickey)", host=HOST))
    reporter = Recorder()

    def connect() -> FakeTransport:
        transport = FakeTransport(fake)
        transport.connect()
        return transport

    session = Session(HOST, connect, reporter, alive_interval=10.0, alive_count_max=3)
    result = session.run(REQUEST, lambda release: make_spec(release))
    assert isinstance(result.error, AuthFailed)
    assert host_exit(result) == ExitStatus.CANNOT_RUN
    assert fake.scripts == []
    assert reporter.kinds() == ["finished"]


def test_a_socket_error_while_sending_is_connection_lost() -> None:
    class Closed(FakeProcess):
        def send(self, data: bytes) -> None:
            raise OSError("Socket is closed")

    class Broken(FakeTransport):
        def start(self, script: str) -> FakeProcess:
            self.connect()
            return Closed(self._fake, self._fake.answer(script))

    run = run_session(Answer(stdout=probe_stdout()), transport=Broken)
    assert type(run.result.error) is ConnectionLost
    assert run.result.error.message == "connection lost: Socket is closed"


def test_the_journal_keeps_a_start_and_an_end_with_the_run_id(tmp_path: Path) -> None:
    journal = LocalJournal(tmp_path / "audit.jsonl")
    run_session(
        Answer(stdout=probe_stdout(), stderr=agent_stderr(started(), exited(status=3))),
        journal=journal,
    )
    records = [json.loads(line) for line in journal.path.read_text().splitlines()]
    assert [(r["type"], r["run_id"]) for r in records] == [("start", "r1"), ("end", "r1")]
    assert records[0]["release_id"] == RELEASE_ID
    assert records[1]["status"] == 3
    assert SECRET not in journal.path.read_text()


class ClosedPipe(Recorder):
    """Our stdout's reader is gone (`oneoff ... | true`): every stdout write fails."""

    def output(self, host: str, stream: str, data: bytes) -> None:
        if stream == "stdout":
            raise BrokenPipeError(32, "Broken pipe")
        super().output(host, stream, data)


def test_a_closed_stdout_is_sigpipe() -> None:
    # the command's stdout starts on a piece of its own, so none of it is "early"
    run = run_session(
        Answer(
            stdout=probe_on_a_piece_boundary() + b"x" * 70,
            stderr=agent_stderr(started(), exited(status=None, signal="SIGTERM", signal_number=15)),
        ),
        reporter=ClosedPipe(),
    )
    assert run.result.error is None
    assert (run.result.signal, run.result.signal_number) == ("SIGPIPE", 13)
    assert host_exit(run.result) == 141


def test_a_closed_stdout_on_the_first_early_bytes_is_sigpipe_too() -> None:
    run = run_session(
        Answer(
            stdout=probe_stdout() + b"first line\n",
            stderr=agent_stderr(started(), exited(status=None, signal="SIGTERM", signal_number=15)),
        ),
        reporter=ClosedPipe(),
    )
    assert run.result.error is None
    assert host_exit(run.result) == 141


@pytest.mark.parametrize(
    "garbage",
    [proto.encode_frame(proto.EVENT, b"Traceback (most recent"), b"e\xff\xff\xff\xff"],
    ids=["event-not-json", "frame-too-large"],
)
def test_a_corrupt_frame_is_the_hosts_result_not_a_raise(garbage: bytes) -> None:
    run = run_session(Answer(stdout=probe_stdout(), stderr=agent_stderr(started(), garbage)))
    assert isinstance(run.result.error, CannotRun)
    assert run.reporter.kinds()[-1] == "finished"
