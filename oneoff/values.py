"""Run specs going out and results coming back: plain values, no I/O."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from oneoff.errors import CannotRun, ExitStatus, LockBusy, OneoffError

Mode = Literal["run", "plan"]


def new_run_id() -> str:
    """Sortable and unique enough across operators: UTC time plus 24 random bits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()


@dataclass(frozen=True)
class Masked:
    """Extra env values (-e): passed to the agent, never shown (repr and str are masked)."""

    values: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return "Masked(" + ", ".join(f"{key}=***" for key in self.values) + ")"

    __str__ = __repr__


@dataclass(frozen=True)
class RunSpec:
    """Everything the agent needs for one run on one host, pinned to one release."""

    host: str
    run_id: str
    argv: tuple[str, ...]
    display: str
    release_path: str
    release_id: str
    revision: str | None
    venv: str
    env_files: tuple[str, ...]
    state_dir: str
    extra_env: Masked = Masked()
    task: str | None = None
    task_source: str | None = None  # where the task was defined, for --dry-run
    mode: Mode = "run"
    timeout: float | None = None
    kill_after: float = 10.0
    lock: str | None = None
    lock_wait: float = 0.0
    pty: bool = False
    term: str | None = None
    winsize: tuple[int, int] | None = None
    audit: bool = True
    alive_interval: float = 10.0
    alive_count_max: int = 3
    operator: Mapping[str, str] = field(default_factory=dict)
    detach: bool = False
    runs_keep: float = 30 * 86400.0

    def to_agent(self, protocol: int) -> dict[str, Any]:
        """The JSON the agent reads; the only place extra env values leave the client."""
        return {
            "protocol": protocol,
            "mode": self.mode,
            "host": self.host,
            "run_id": self.run_id,
            "argv": list(self.argv),
            "display": self.display,
            "task": self.task,
            "task_source": self.task_source,
            "release": self.release_path,
            "release_id": self.release_id,
            "revision": self.revision,
            "venv": self.venv,
            "env_files": list(self.env_files),
            "extra_env": dict(self.extra_env.values),
            "state_dir": self.state_dir,
            "timeout": self.timeout,
            "kill_after": self.kill_after,
            "lock": self.lock,
            "lock_wait": self.lock_wait,
            "pty": self.pty,
            "term": self.term,
            "winsize": list(self.winsize) if self.winsize else None,
            "audit": self.audit,
            "alive_interval": self.alive_interval,
            "alive_count_max": self.alive_count_max,
            "operator": dict(self.operator),
            "detach": self.detach,
            "runs_keep": self.runs_keep,
        }


def operator_identity() -> dict[str, str]:
    """Who is running this, for the audit trail: local user and machine."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"user": user, "machine": socket.gethostname()}


@dataclass(frozen=True)
class HostResult:
    """What happened on one host, mirroring subprocess: status or signal, or an error."""

    host: str
    display: str = ""
    run_id: str | None = None
    release_id: str | None = None
    revision: str | None = None
    status: int | None = None
    signal: str | None = None
    signal_number: int | None = None
    timed_out: bool = False
    interrupted: bool = False
    error: OneoffError | None = None
    duration: float = 0.0
    plan: Mapping[str, Any] | None = None
    detached: bool = False  # started with --detach: still running, under run_id
    stdout: bytes | None = None  # kept only when the API is asked to capture output
    stderr: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 0 and not self.timed_out

    @property
    def exit_code(self) -> int:
        """The status oneoff exits with when this is the only host (design §3)."""
        if self.error is not None:
            return int(self.error.exit_status)
        if self.timed_out:
            return ExitStatus.TIMED_OUT
        if self.interrupted:
            return ExitStatus.INTERRUPTED
        if self.signal_number is not None:
            return 128 + self.signal_number
        return self.status if self.status is not None else ExitStatus.CANNOT_RUN

    @property
    def could_not_run(self) -> bool:
        return isinstance(self.error, CannotRun)

    @property
    def lock_busy(self) -> bool:
        return isinstance(self.error, LockBusy)

    def describe(self) -> str:
        """Short outcome for tables and logs: ``exit 0``, ``timed out``, ``killed by SIGKILL``."""
        if self.error is not None:
            return str(self.error.message)
        if self.timed_out:
            return "timed out"
        if self.interrupted:
            return "interrupted"
        if self.signal:
            return f"killed by {self.signal}"
        return f"exit {self.status}"
