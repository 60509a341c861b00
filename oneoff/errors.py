"""Every error oneoff reports, and the exit status each one maps to.

One tree, so the CLI can turn any failure into one clear line and the right
status without knowing where it came from::

    OneoffError                      (exit 1)
    ├── UsageError                   (exit 2)  bad flag, unknown task or target
    │   ├── InventoryError           (exit 2)  file:line: dotted.path: what was expected
    │   └── DriftRefused             (exit 2)  hosts on different releases
    ├── NotStarted                   (exit 1)  --fail-fast / --max-fail / Ctrl-C came first
    ├── LockBusy                     (exit 75) another run holds the lock
    └── CannotRun                    (exit 255) nothing ran on that host
        ├── ConnectError                       DNS, refused, timeout, auth
        │   └── HostKeyError                   unknown, changed or revoked host key
        ├── ReleaseError                       current dangling, venv missing, env file unreadable
        ├── AgentError                         the agent could not start the command
        └── ConnectionLost                     the link died while the command ran

Paramiko and socket errors are wrapped once, in the transport, with the host
attached; nothing above the transport sees them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Statuses oneoff itself decides; a single host's own status passes through."""

    OK = 0
    FAILED = 1
    USAGE = 2
    LOCK_BUSY = 75
    TIMED_OUT = 124
    INTERRUPTED = 130
    CANNOT_RUN = 255


class OneoffError(Exception):
    """Base of every error oneoff reports to the user as one line."""

    exit_status: int = ExitStatus.FAILED

    def __init__(self, message: str, *, host: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.host = host
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.host}: {self.message}" if self.host else self.message
        if not self.hint:
            return text
        # a multi-line message (a table) gets its hint on a line of its own
        return f"{text.rstrip()}\n{self.hint}" if "\n" in text else f"{text} ({self.hint})"


class UsageError(OneoffError):
    """The command line asks for something impossible; nothing was run."""

    exit_status = ExitStatus.USAGE


class InventoryError(UsageError):
    """The inventory file is not valid; the message carries file:line and key."""


class DriftRefused(UsageError):
    """Hosts of one target are on different releases; nothing was run (--allow-drift)."""


class NotStarted(OneoffError):
    """A host that was not started: --fail-fast, --max-fail or Ctrl-C stopped the run first."""


class LockBusy(OneoffError):
    """Another run holds the named lock."""

    exit_status = ExitStatus.LOCK_BUSY


class CannotRun(OneoffError):
    """The command could not be run on a host (as ssh uses 255)."""

    exit_status: int = ExitStatus.CANNOT_RUN


class ConnectError(CannotRun):
    """Could not reach or log in to the host."""


class HostKeyError(ConnectError):
    """The host's key is unknown, changed or revoked."""


class ReleaseError(CannotRun):
    """The release, its venv or its env files could not be resolved on the host."""


class AgentError(CannotRun):
    """The remote agent failed before the command started."""


class ConnectionLost(CannotRun):
    """The connection died while the command ran; the agent stopped the command."""
