"""Run specs going out and results coming back: plain values, no I/O."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["run", "plan"]
RunPolicy = Literal["once", "each"]


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
class Task:
    """One named admin command, e.g. ``migrate`` -> ``python manage.py migrate --noinput``.

    ``source`` says where it was defined (``inventory.yaml:42``, ``pyproject.toml:7``,
    ``Procfile:2``, ``preset: django``) so ``oneoff tasks`` can show it and collisions
    can be explained.
    """

    name: str
    command: tuple[str, ...]
    source: str
    run: RunPolicy = "once"
    lock: str | None = None
    timeout: float | None = None
    tty: bool | None = None
    description: str | None = None
    shell: bool = False
    """The command is a shell line (a Procfile's) run as ``sh -c``: it takes no ARGS, since
    appending them to a line such as ``a && b`` would reach only ``b``."""


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
