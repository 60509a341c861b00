"""The shipped agent, run locally the way sshd runs it: ``python -c BOOT``, frames on its stdin.

No SSH here: these check the agent's side of the protocol in well under a second each,
under our Python and, when there is one, under the oldest the agent supports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from oneoff.remote import source
from oneoff.remote.agent import build_env, exit_status
from oneoff.remote.protocol import (
    ALIVE,
    BOOT,
    EVENT,
    MAX_FRAME,
    PROTOCOL_VERSION,
    SIGNAL,
    SPEC,
    STDERR,
    STDIN,
    STDIN_EOF,
    STDOUT,
    SYNC,
    FrameReader,
    encode_frame,
)
from oneoff.remote.state import Lock, StateDir

# the oldest Python the agent supports, when this machine has it (as tests/test_old_python.py)
OLD = [Path("/root/.pyenv/versions/3.8.18/bin/python"), Path(shutil.which("python3.8") or "/-")]
PYTHONS = [sys.executable, *[str(p) for p in OLD if p.is_file()][:1]]
PYTHON_IDS = ["ours", "oldest"][: len(PYTHONS)]


@dataclass
class AgentRun:
    returncode: int
    stdout: bytes
    frames: list[tuple[bytes, bytes]]
    before_sync: bytes
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events = [json.loads(p) for k, p in self.frames if k == EVENT]

    def event(self, name: str) -> dict[str, Any]:
        (found,) = [e for e in self.events if e["event"] == name]
        return found

    def stream(self, kind: bytes) -> bytes:
        return b"".join(p for k, p in self.frames if k == kind)


@pytest.fixture
def release(tmp_path: Path) -> Path:
    path = tmp_path / "release"
    (path / ".venv" / "bin").mkdir(parents=True)
    return path


def _spec(release: Path, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "mode": "run",
        "host": "web1",
        "run_id": "20260101T000000-abcd",
        "argv": ["true"],
        "display": "true",
        "task": None,
        "task_source": None,
        "release": str(release),
        "release_id": "20260101T000000",
        "revision": "abc123",
        "venv": str(release / ".venv"),
        "env_files": [],
        "extra_env": {},
        "state_dir": str(release.parent / "state"),
        "timeout": None,
        "kill_after": 2.0,
        "lock": None,
        "lock_wait": 0,
        "pty": False,
        "term": None,
        "winsize": None,
        "audit": True,
        "alive_interval": 10.0,
        "alive_count_max": 3,
        "operator": {"user": "test"},
        "detach": False,
        "runs_keep": None,
    }
    spec.update(overrides)
    return spec


def run_agent(
    spec: dict[str, Any],
    frames: bytes = b"",
    python: str = sys.executable,
    hang_up: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> AgentRun:
    """Start the agent as the client would, send frames, read until its exit event.

    Our end of its stdin stays open until then (closing it is hanging up), unless
    ``hang_up``, which closes it right after the frames.
    """
    proc = subprocess.Popen(
        [python, "-c", BOOT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=spec["release"],
        env=env,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    proc.stdin.write(encode_frame(b"A", source()))
    proc.stdin.write(encode_frame(SPEC, json.dumps(spec).encode()) + frames)
    proc.stdin.flush()
    if hang_up:
        proc.stdin.close()
    err = b""
    deadline = time.monotonic() + timeout
    while not any(k == EVENT and b'"exit"' in p for k, p in _frames(err)):
        assert time.monotonic() < deadline, err
        chunk = os.read(proc.stderr.fileno(), 1 << 16)
        if not chunk:
            break
        err += chunk
    if not proc.stdin.closed:
        proc.stdin.close()
    returncode = proc.wait(timeout)
    stdout = proc.stdout.read()
    err += proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return AgentRun(returncode, stdout, _frames(err), err.partition(SYNC)[0])


def _frames(err: bytes) -> list[tuple[bytes, bytes]]:
    """The whole frames the agent has sent so far, after its SYNC marker."""
    _, sync, rest = err.partition(SYNC)
    return FrameReader().feed(rest) if sync else []


def _audit(spec: dict[str, Any]) -> list[dict[str, Any]]:
    path = Path(spec["state_dir"]) / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("python", PYTHONS, ids=PYTHON_IDS)
def test_stdout_is_raw_stderr_is_framed_and_the_status_is_passed_on(
    release: Path, python: str
) -> None:
    argv = ["sh", "-c", "echo out; echo err >&2; exit 3"]
    run = run_agent(_spec(release, argv=argv), encode_frame(STDIN_EOF), python=python)
    assert run.stdout == b"out\n"
    assert run.stream(STDERR) == b"err\n"
    assert run.before_sync == b""
    assert run.event("started")["run_id"] == "20260101T000000-abcd"
    exit_event = run.event("exit")
    assert exit_event["status"] == 3 and exit_event["signal"] is None
    assert not exit_event["client_lost"] and not exit_event["timed_out"]
    assert run.returncode == 3


def test_the_shipped_agent_never_imports_a_oneoff_installed_on_the_host(
    release: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "site" / "oneoff"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('the host oneoff was imported')\n")
    env = dict(os.environ, PYTHONPATH=str(fake.parent))
    run = run_agent(_spec(release, argv=["echo", "hi"]), encode_frame(STDIN_EOF), env=env)
    assert run.stdout == b"hi\n", run.before_sync
    assert run.returncode == 0


def test_the_command_gets_the_venv_env_files_and_extra_env(release: Path) -> None:
    (release / ".env").write_text("FROM_FILE=file\nOVERRIDDEN=file\n")
    spec = _spec(
        release,
        argv=["sh", "-c", 'echo "$FROM_FILE $OVERRIDDEN $VIRTUAL_ENV $ONEOFF_RUN_ID"; pwd'],
        env_files=[str(release / ".env")],
        extra_env={"OVERRIDDEN": "extra"},
    )
    run = run_agent(spec, encode_frame(STDIN_EOF))
    venv = release / ".venv"
    assert run.stdout.decode() == f"file extra {venv} 20260101T000000-abcd\n{release}\n"


@pytest.mark.parametrize("python", PYTHONS, ids=PYTHON_IDS)
def test_stdin_frames_reach_the_command_and_its_end_closes_it(release: Path, python: str) -> None:
    frames = encode_frame(STDIN, b"one\n") + encode_frame(STDIN, b"two\n")
    run = run_agent(_spec(release, argv=["cat"]), frames + encode_frame(STDIN_EOF), python=python)
    assert run.stdout == b"one\ntwo\n"
    assert run.event("exit")["status"] == 0


def test_a_signal_frame_stops_the_command_and_says_why(release: Path) -> None:
    frames = encode_frame(SIGNAL, b"TERM")
    run = run_agent(_spec(release, argv=["sleep", "30"]), frames)
    exit_event = run.event("exit")
    assert exit_event["signal"] == "SIGTERM"
    assert exit_event["stop_reason"] == "client sent SIGTERM"
    assert run.returncode == 128 + 15


def test_an_unknown_signal_name_is_ignored(release: Path) -> None:
    frames = encode_frame(SIGNAL, b"USR1") + encode_frame(STDIN_EOF)
    argv = ["sh", "-c", "sleep 0.3; echo survived"]
    run = run_agent(_spec(release, argv=argv), frames)
    assert run.stdout == b"survived\n"
    assert "stop_reason" not in run.event("exit")


def test_the_timeout_stops_the_command(release: Path) -> None:
    started = time.monotonic()
    run = run_agent(_spec(release, argv=["sleep", "30"], timeout=0.5))
    assert time.monotonic() - started < 10
    exit_event = run.event("exit")
    assert exit_event["timed_out"] and exit_event["signal"] == "SIGTERM"
    assert exit_event["stop_reason"] == "timeout"


@pytest.mark.parametrize("python", PYTHONS, ids=PYTHON_IDS)
def test_a_command_ignoring_sigterm_is_killed_after_kill_after(release: Path, python: str) -> None:
    argv = ["sh", "-c", "trap '' TERM; echo ready; sleep 30"]
    run = run_agent(_spec(release, argv=argv, timeout=0.3, kill_after=0.5), python=python)
    exit_event = run.event("exit")
    assert exit_event["signal"] == "SIGKILL" and exit_event["timed_out"]
    assert exit_event["stop_reason"] == "timeout"


def test_hanging_up_stops_the_command_and_the_audit_says_the_client_was_lost(
    release: Path,
) -> None:
    spec = _spec(release, argv=["sleep", "30"])
    run = run_agent(spec, hang_up=True)
    exit_event = run.event("exit")
    assert exit_event["client_lost"] and exit_event["signal"] == "SIGTERM"
    assert exit_event["stop_reason"] == "client lost: stdin closed"
    start, end = _audit(spec)
    assert (start["type"], end["type"]) == ("start", "end")
    assert end["client_lost"] and end["run_id"] == spec["run_id"]


def test_a_garbled_frame_counts_as_the_client_lost(release: Path) -> None:
    oversized = SIGNAL + (MAX_FRAME + 1).to_bytes(4, "big")
    run = run_agent(_spec(release, argv=["sleep", "30"]), oversized)
    assert run.event("exit")["stop_reason"] == "client lost: garbled frame"


def test_a_silent_client_is_lost_after_alive_interval_times_count(release: Path) -> None:
    spec = _spec(release, argv=["sleep", "30"], alive_interval=0.2, alive_count_max=2)
    run = run_agent(spec)
    exit_event = run.event("exit")
    assert exit_event["client_lost"]
    assert exit_event["stop_reason"].startswith("client lost: no heartbeat for")


def test_an_idle_agent_sends_heartbeats(release: Path) -> None:
    spec = _spec(release, argv=["sleep", "1"], alive_interval=0.4, alive_count_max=100)
    heartbeats = b"".join(encode_frame(b"H") for _ in range(3))
    run = run_agent(spec, heartbeats + encode_frame(STDIN_EOF))
    assert sum(1 for kind, _ in run.frames if kind == ALIVE) >= 2
    assert run.event("exit")["status"] == 0


def test_a_missing_command_is_127_and_never_started(release: Path) -> None:
    run = run_agent(_spec(release, argv=["no-such-command-here"]))
    error = run.event("error")
    assert error["kind"] == "spawn" and error["status"] == 127
    assert error["message"].startswith("cannot run no-such-command-here")
    assert not [e for e in run.events if e["event"] == "started"]
    assert run.event("exit")["status"] == 127


@pytest.mark.parametrize("python", PYTHONS, ids=PYTHON_IDS)
def test_a_pty_run_gets_its_window_size_and_terminal(release: Path, python: str) -> None:
    argv = ["sh", "-c", 'stty size; echo "$TERM"; test -t 0 && echo tty']
    spec = _spec(release, argv=argv, pty=True, winsize=[30, 100], term="xterm")
    run = run_agent(spec, python=python)
    assert run.stream(STDOUT).replace(b"\r\n", b"\n") == b"30 100\nxterm\ntty\n"
    assert run.stdout == b""


def test_plan_mode_reports_counts_and_names_and_runs_nothing(release: Path) -> None:
    (release / ".env").write_text("A=1\nB=secret-value\n")
    spec = _spec(
        release,
        mode="plan",
        argv=["sh", "-c", "touch ran"],
        env_files=[str(release / ".env")],
        extra_env={"TOKEN": "hunter2"},
    )
    run = run_agent(spec)
    plan = next(e for e in run.events if e["event"] == "plan")
    assert plan["env_files"] == [{"path": str(release / ".env"), "keys": 2}]
    assert plan["extra_env_keys"] == ["TOKEN"]
    assert plan["path_head"] == str(release / ".venv" / "bin")
    assert b"secret-value" not in run.stream(EVENT) and b"hunter2" not in run.stream(EVENT)
    assert not (release / "ran").exists()


def test_a_bad_env_file_is_reported_by_file_and_line_only(release: Path) -> None:
    (release / ".env").write_text("GOOD=1\n'broken secret\n")
    spec = _spec(release, argv=["true"], env_files=[str(release / ".env")])
    run = run_agent(spec)
    error = run.event("error")
    assert error["kind"] == "env_file" and error["line"] == 2
    assert b"secret" not in run.stream(EVENT)
    assert run.returncode == 255


def test_a_held_lock_makes_the_run_busy_and_names_its_holder(release: Path) -> None:
    spec = _spec(release, argv=["touch", "ran"], lock="migrate", lock_wait=0)
    held = Lock(StateDir(spec["state_dir"]), "migrate")
    try:
        assert held.try_acquire()
        held.record({"run_id": "other-run"})
        run = run_agent(spec)
    finally:
        held.close()
    busy = run.event("lock_busy")
    assert busy["lock"] == "migrate" and busy["holder"] == {"run_id": "other-run"}
    assert run.returncode == 75
    assert not (release / "ran").exists()


@pytest.mark.parametrize("python", PYTHONS, ids=PYTHON_IDS)
def test_a_detached_run_goes_on_and_leaves_its_status_and_log(release: Path, python: str) -> None:
    spec = _spec(release, argv=["sh", "-c", "sleep 0.3; echo done; echo warn >&2"], detach=True)
    run = run_agent(spec, python=python)
    assert run.returncode == 0
    detached = run.event("detached")
    assert detached["run_id"] == spec["run_id"]
    status_path = Path(spec["state_dir"]) / "runs" / (spec["run_id"] + ".json")
    deadline = time.monotonic() + 10
    while json.loads(status_path.read_text())["state"] != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status = json.loads(status_path.read_text())
    assert status["status"] == 0 and status["pid"] == detached["pid"]
    log = status_path.with_suffix(".log").read_bytes().splitlines()
    assert [line.split(b" ", 1)[1] for line in log] == [b"o done", b"e warn"]


# -- the pure parts, in-process -------------------------------------------------------


def test_the_venv_comes_first_on_path_and_pythonhome_is_dropped(release: Path) -> None:
    spec = _spec(release)
    env = build_env(spec, {"PATH": "/usr/bin", "PYTHONHOME": "/opt/py", "HOME": "/h"})
    assert env["PATH"] == f"{release / '.venv' / 'bin'}:/usr/bin"
    assert "PYTHONHOME" not in env and env["HOME"] == "/h"
    assert env["PYTHONUNBUFFERED"] == "1" and "TERM" not in env


def test_a_pty_run_gets_a_default_term(release: Path) -> None:
    assert build_env(_spec(release, pty=True), {})["TERM"] == "xterm-256color"


def test_the_agents_exit_status_is_the_commands_or_128_plus_its_signal() -> None:
    assert exit_status({"status": 0}) == 0
    assert exit_status({"status": None, "signal_number": 9}) == 137
