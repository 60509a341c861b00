"""The agent stops the command when told, when the client dies, and at the timeout;
locks keep two runs apart; every run leaves an audit record. Real sshd throughout."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from support.run import oneoff, processes_with, spawn, wait_for
from support.sshd import SshHost

SECRET = "s3cret"


def sleeper(marker: str, *, ignore: str = "", seconds: int = 120) -> list[str]:
    """A remote command that says 'ready', optionally ignores a signal, then sleeps."""
    setup = f"signal.signal(signal.{ignore}, signal.SIG_IGN); " if ignore else ""
    code = (
        f"import signal, sys, time; {setup}"
        f"print('ready', flush=True); time.sleep({seconds}); print('woke')"
    )
    return ["--", "python", "-c", code, marker]


def start(ssh_host: SshHost, *args: str) -> subprocess.Popen[bytes]:
    proc = spawn("-H", "web1", *args, inventory=ssh_host.inventory)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == b"ready\n", (line, proc.stderr.read() if proc.stderr else b"")
    return proc


def audit_records(ssh_host: SshHost) -> list[dict[str, object]]:
    path = ssh_host.app.state_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_client_stops_the_remote_command(ssh_host: SshHost, how: int) -> None:
    marker = f"oneoff-test-{uuid.uuid4()}"
    proc = start(ssh_host, *sleeper(marker))
    assert processes_with(marker)
    proc.send_signal(how)
    assert proc.wait(timeout=30) == 130
    assert processes_with(marker) == []


def test_killed_client_leaves_no_remote_process(ssh_host: SshHost) -> None:
    marker = f"oneoff-test-{uuid.uuid4()}"
    proc = start(ssh_host, *sleeper(marker))
    proc.kill()
    proc.wait(timeout=10)
    assert wait_for(lambda: processes_with(marker) == [], timeout=30), processes_with(marker)


def test_second_interrupt_kills_a_command_that_ignores_sigint(ssh_host: SshHost) -> None:
    marker = f"oneoff-test-{uuid.uuid4()}"
    proc = start(ssh_host, *sleeper(marker, ignore="SIGINT"))
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert proc.poll() is None and processes_with(marker), "SIGINT alone must not stop it"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 130
    assert processes_with(marker) == []


def test_timeout_stops_the_command_with_status_124(ssh_host: SshHost) -> None:
    marker = f"oneoff-test-{uuid.uuid4()}"
    result = oneoff("-H", "web1", "--timeout", "1s", *sleeper(marker), inventory=ssh_host.inventory)
    assert result.returncode == 124
    assert result.stdout == b"ready\n"
    assert processes_with(marker) == []


def test_timeout_escalates_to_sigkill_after_kill_after(ssh_host: SshHost) -> None:
    marker = f"oneoff-test-{uuid.uuid4()}"
    started = time.monotonic()
    result = oneoff(
        "-H", "web1", "--timeout", "1", "--kill-after", "1", *sleeper(marker, ignore="SIGTERM"),
        inventory=ssh_host.inventory,
    )  # fmt: skip
    assert result.returncode == 124
    assert time.monotonic() - started < 30
    assert processes_with(marker) == []


def test_command_killed_by_a_signal_exits_128_plus_the_signal(ssh_host: SshHost) -> None:
    result = oneoff(
        "-H", "web1", "--", "python", "-c", "import os; os.kill(os.getpid(), 9)",
        inventory=ssh_host.inventory,
    )  # fmt: skip
    assert result.returncode == 137


def test_busy_lock_fails_at_once_with_the_holder(ssh_host: SshHost) -> None:
    marker = f"oneoff-test-{uuid.uuid4()}"
    holder = start(ssh_host, "--lock", "db", *sleeper(marker))
    try:
        started = time.monotonic()
        second = oneoff("-H", "web1", "--lock", "db", "--", "true", inventory=ssh_host.inventory)
        assert second.returncode == 75
        assert time.monotonic() - started < 10
        err = second.stderr.decode()
        assert "lock 'db' is busy" in err and "held by" in err and "python -c" in err
    finally:
        holder.send_signal(signal.SIGINT)
        holder.wait(timeout=30)


def test_lock_wait_waits_for_the_holder_to_finish(ssh_host: SshHost) -> None:
    holder = start(
        ssh_host, "--lock", "db", "--", "python", "-c",
        "import time; print('ready', flush=True); time.sleep(2)",
    )  # fmt: skip
    second = oneoff(
        "-H", "web1", "--lock", "db", "--lock-wait", "30s", "--", "echo", "got it",
        inventory=ssh_host.inventory,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert second.stdout == b"got it\n"
    assert b"waiting for lock 'db'" in second.stderr
    assert holder.wait(timeout=30) == 0


def test_lock_is_released_when_its_holder_is_killed(ssh_host: SshHost) -> None:
    marker = f"oneoff-test-{uuid.uuid4()}"
    holder = start(ssh_host, "--lock", "db", *sleeper(marker))
    holder.kill()
    holder.wait()
    assert wait_for(lambda: processes_with(marker) == [], timeout=30)
    again = oneoff("-H", "web1", "--lock", "db", "--", "true", inventory=ssh_host.inventory)
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", ""])
def test_lock_name_with_a_path_is_refused(ssh_host: SshHost, name: str) -> None:
    result = oneoff("-H", "web1", "--lock", name, "--", "true", inventory=ssh_host.inventory)
    assert result.returncode == 2
    assert b"lock" in result.stderr


def test_unparseable_timeout_is_a_usage_error(ssh_host: SshHost) -> None:
    result = oneoff("-H", "web1", "--timeout", "soon", "--", "true", inventory=ssh_host.inventory)
    assert result.returncode == 2
    assert b"not a duration" in result.stderr


def test_audit_records_start_and_end_of_each_kind_of_run_without_env_values(
    ssh_host: SshHost,
) -> None:
    inv = ssh_host.inventory
    assert oneoff("-H", "web1", "-e", "TOKEN=tok-99", "--", "true", inventory=inv).returncode == 0
    assert oneoff("-H", "web1", "--", "false", inventory=inv).returncode == 1
    assert oneoff("-H", "web1", "--timeout", "1", *sleeper("t"), inventory=inv).returncode == 124
    proc = start(ssh_host, *sleeper("interrupted"))
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    records = audit_records(ssh_host)
    text = (ssh_host.app.state_dir / "audit.jsonl").read_text()
    assert SECRET not in text and "tok-99" not in text
    ends = [r for r in records if r["type"] == "end"]
    starts = [r for r in records if r["type"] == "start"]
    assert len(starts) == len(ends) == 4
    assert [r["status"] for r in ends[:2]] == [0, 1]
    assert ends[2]["timed_out"] is True
    assert ends[3]["signal"] == "SIGINT" or ends[3]["status"] != 0
    for record in ends:
        assert record["host"] == "web1"
        assert record["release_id"] == "20261128T120000"
        assert isinstance(record["duration"], float)
        operator = record["operator"]
        assert isinstance(operator, dict) and operator["user"] and operator["machine"]


@pytest.fixture
def blocked_state_dir(
    ssh_host: SshHost, write_inventory: Callable[..., Path], tmp_path: Path
) -> tuple[Path, Path]:
    """(inventory, blocker): state_dir lies under a regular file, so it cannot be created."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    inventory = write_inventory(
        {"web1": {"hostname": "127.0.0.1", "app_root": str(ssh_host.app.root)}},
        defaults={"state_dir": str(blocker / "oneoff")},
    )
    return inventory, blocker


def test_unwritable_state_dir_is_refused_unless_no_audit(
    blocked_state_dir: tuple[Path, Path],
) -> None:
    inventory, blocker = blocked_state_dir
    refused = oneoff("-H", "web1", "--", "echo", "ran", inventory=inventory)
    assert refused.returncode == 255
    assert str(blocker).encode() in refused.stderr and b"--no-audit" in refused.stderr
    assert refused.stdout == b""
    allowed = oneoff("-H", "web1", "--no-audit", "--", "echo", "ran", inventory=inventory)
    assert allowed.returncode == 0
    assert allowed.stdout == b"ran\n"


def test_audit_command_reads_the_trail(ssh_host: SshHost) -> None:
    inv = ssh_host.inventory
    assert oneoff("-H", "web1", "--", "echo", "hi", inventory=inv).returncode == 0
    listing = oneoff("audit", "-H", "web1", "--json", inventory=inv)
    assert listing.returncode == 0, listing.stderr
    records = [json.loads(line) for line in listing.stdout.splitlines()]
    assert any(r["command"] == "echo hi" and r.get("status") == 0 for r in records)
    text = oneoff("audit", "-H", "web1", "--since", "1h", inventory=inv)
    assert text.returncode == 0
    assert b"echo hi" in text.stdout


def test_closing_our_stdout_stops_the_remote_command_like_sigpipe(ssh_host: SshHost) -> None:
    marker = f"oneoff-test-{uuid.uuid4()}"
    proc = spawn(
        "-H", "web1", "--", "python", "-c", "while True: print('y')", marker,
        inventory=ssh_host.inventory,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"y\n"
    proc.stdout.close()  # as `oneoff ... | head -1` does once it has its line
    assert proc.wait(timeout=30) == 128 + signal.SIGPIPE
    assert wait_for(lambda: processes_with(marker) == [], timeout=20)


def test_unwritable_state_dir_with_a_lock_says_the_lock_needs_it(
    blocked_state_dir: tuple[Path, Path],
) -> None:
    inventory, _ = blocked_state_dir
    result = oneoff("-H", "web1", "--no-audit", "--lock", "db", "--", "true", inventory=inventory)
    assert result.returncode == 255
    assert b"a lock lives there" in result.stderr and b"--no-audit" not in result.stderr
