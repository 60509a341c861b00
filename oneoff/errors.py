"""Every error oneoff reports, and the exit status each one maps to.

One tree, so the CLI can turn any failure into one clear line and the right
status without knowing where it came from::

    OneoffError                      (exit 1)
    ├── UsageError                   (exit 2)  bad flag, unknown task or target
    │   ├── InventoryError           (exit 2)  file:line: dotted.path: what was expected
    │   └── DriftRefused             (exit 2)  hosts on different releases
    ├── NotStarted                   (exit 1)  --fail-fast / --max-fail / Ctrl-C came first
    ├── LockBusy                     (exit 75) another run holds the lock
    └── CannotRun                    (exit 255) nothing is known to have run on that host
        ├── ConnectError                       DNS, refused, unreachable
        │   ├── ConnectTimeout                 no answer within connect_timeout
        │   ├── AuthFailed                     the server refused every key offered
        │   │   └── KeyLocked                  a key file needs a passphrase, no agent has it
        │   └── HostKeyError                   unknown, changed or revoked host key
        ├── ReleaseError                       current dangling, venv missing, env file unreadable
        ├── AgentError                         the agent could not start the command
        │   └── SpawnError           (126/127) the command is not found / not executable
        └── ConnectionLost                     the link died
            └── RunLost                        ... after the command started: outcome unknown here

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


class ConnectTimeout(ConnectError):
    """The host (or its sshd) did not answer within connect_timeout."""


class AuthFailed(ConnectError):
    """The server refused every key offered; retrying cannot help."""


class KeyLocked(AuthFailed):
    """A key file is passphrase-protected and no agent holds it; oneoff never prompts."""


class HostKeyError(ConnectError):
    """The host's key is unknown, changed or revoked."""


class ReleaseError(CannotRun):
    """The release, its venv or its env files could not be resolved on the host."""


class AgentError(CannotRun):
    """The remote agent failed before the command started."""


class SpawnError(AgentError):
    """The command itself could not be started (not found: 127, not executable: 126)."""

    def __init__(self, message: str, *, host: str, status: int, hint: str | None = None) -> None:
        super().__init__(message, host=host, hint=hint)
        self.exit_status = status


class ConnectionLost(CannotRun):
    """The connection died; nothing is known to have run."""


class RunLost(ConnectionLost):
    """The connection died after the command started: its outcome is unknown here.

    The agent on the host stops the command when our heartbeats stop, and records its
    end in the host's audit trail (``oneoff audit``) or under ``runs/`` (``oneoff logs``).
    """
