"""`oneoff -H web1 shell` is a real terminal: driven here through a real PTY over real sshd."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.run import oneoff, processes_with
from support.sshd import SshHost
from support.terminal import Terminal

PROMPT = b">>> "


@pytest.fixture
def repl(ssh_host: SshHost) -> Iterator[Terminal]:
    """A remote Python REPL in the release (a raw command, so no framework is assumed)."""
    term = Terminal(["-H", "web1", "--", "python", "-q"], ssh_host.inventory, rows=40, cols=120)
    try:
        term.expect(PROMPT)
        yield term
    finally:
        term.close()


def test_repl_sees_the_release_env_and_venv(repl: Terminal) -> None:
    repl.send(b"import os, sys; print(os.environ['GREETING'], sys.prefix.endswith('.venv'))\r")
    repl.expect(b"hello True")
    repl.expect(PROMPT)


def test_window_size_and_resizes_reach_the_remote_side(repl: Terminal) -> None:
    repl.send(b"import shutil; print('size', tuple(shutil.get_terminal_size()))\r")
    repl.expect(b"size (120, 40)")
    repl.expect(PROMPT)
    repl.resize(30, 100)
    # readline redraws its line on SIGWINCH; let that settle before typing, as a person would
    time.sleep(0.5)
    repl.send(b"print('size', tuple(shutil.get_terminal_size()))\r")
    repl.expect(b"size (100, 30)")


def test_ctrl_c_interrupts_the_statement_and_the_session_goes_on(repl: Terminal) -> None:
    repl.send(b"import time; time.sleep(30)\r")
    repl.expect(b"time.sleep(30)")
    repl.send(b"\x03")
    repl.expect(b"KeyboardInterrupt", timeout=10)
    repl.expect(PROMPT)
    repl.send(b"print('still', 'here')\r")
    repl.expect(b"still here")


def test_exit_status_of_the_repl_is_oneoffs_and_the_terminal_is_restored(repl: Terminal) -> None:
    repl.send(b"raise SystemExit(5)\r")
    assert repl.wait() == 5
    assert repl.attrs() == repl.before


def test_ctrl_d_ends_the_session(repl: Terminal) -> None:
    repl.send(b"\x04")
    assert repl.wait() == 0
    assert repl.attrs() == repl.before


def test_escape_sequence_closes_a_hung_session_and_stops_the_command(ssh_host: SshHost) -> None:
    marker = f"oneoff-hung-{uuid.uuid4()}"
    code = (
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "print('hung'); time.sleep(120)"
    )
    term = Terminal(["-H", "web1", "--", "python", "-c", code, marker], ssh_host.inventory)
    try:
        term.expect(b"hung")
        term.send(b"\r~.")
        assert term.wait() == 255
        assert term.attrs() == term.before
        assert processes_with(marker) == [] or _gone_soon(marker)
    finally:
        term.close()


def _gone_soon(marker: str) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not processes_with(marker):
            return True
        time.sleep(0.2)
    return False


def test_shell_task_defaults_to_the_venv_python_repl(ssh_host: SshHost) -> None:
    term = Terminal(["-H", "web1", "shell"], ssh_host.inventory)
    try:
        term.expect(PROMPT)
        term.send(b"import sys; print(sys.prefix.endswith('.venv'))\r")
        term.expect(b"True")
        term.send(b"exit()\r")
        assert term.wait() == 0
    finally:
        term.close()


def test_tty_on_several_hosts_is_refused(two_hosts: Path) -> None:
    inventory = two_hosts
    result = oneoff("-H", "web1,web2", "-t", "--all", "--", "true", inventory=inventory)
    assert result.returncode == 2
    assert b"cannot be shared by several hosts" in result.stderr


def test_fifty_megabytes_of_piped_stdin_arrive_intact(ssh_host: SshHost) -> None:
    data = os.urandom(50 * 1024 * 1024)
    code = "import sys, hashlib; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"
    result = oneoff(
        "-T", "-H", "web1", "--", "python", "-c", code, input=data, inventory=ssh_host.inventory
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == hashlib.sha256(data).hexdigest()


def test_interactive_session_is_audited_without_its_keystrokes(
    repl: Terminal, ssh_host: SshHost
) -> None:
    repl.send(b"token = 'typed-secret-42'\r")
    repl.expect(PROMPT)
    repl.send(b"exit()\r")
    assert repl.wait() == 0
    text = (ssh_host.app.state_dir / "audit.jsonl").read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["type"] for r in records] == ["start", "end"]
    assert records[1]["tty"] is True and records[1]["status"] == 0
    assert "typed-secret-42" not in text
