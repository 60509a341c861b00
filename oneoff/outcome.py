"""What happened, and what oneoff exits with: worked out here and nowhere else.

One host passes its command's own status through; several fold into 0, 1 or the one
status they all share (design §3). Audit records and detached runs' status records
are folded by the same rules, so ``oneoff logs`` and ``oneoff audit`` agree with the
run that wrote them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oneoff.errors import (
    CannotRun,
    ExitStatus,
    LockBusy,
    NotStarted,
    OneoffError,
    RunLost,
    UsageError,
)


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
        return host_exit(self)

    def describe(self) -> str:
        """Short outcome for tables and logs: ``exit 0``, ``timed out``, ``killed by SIGKILL``."""
        return describe(self)


def host_exit(result: HostResult) -> int:
    if result.error is not None:
        return int(result.error.exit_status)
    if result.timed_out:
        return ExitStatus.TIMED_OUT
    if result.interrupted:
        return ExitStatus.INTERRUPTED
    if result.signal_number is not None:
        return 128 + result.signal_number
    return result.status if result.status is not None else ExitStatus.CANNOT_RUN


def describe(result: HostResult) -> str:
    if result.error is not None:
        return str(result.error.message)
    if result.timed_out:
        return "timed out"
    if result.interrupted:
        return "interrupted"
    if result.signal:
        return f"killed by {result.signal}"
    return f"exit {result.status}"


def fleet_exit(results: Sequence[HostResult]) -> int:
    """Design §3: one host passes its status through; several give 0, 1 or a shared status."""
    if len(results) == 1:
        return host_exit(results[0])
    failed = [r for r in results if not r.ok]
    if not failed:
        return ExitStatus.OK
    shared = _shared_status([r.error for r in failed])
    if shared is not None:
        return shared
    if any(r.interrupted for r in results):
        return ExitStatus.INTERRUPTED
    return ExitStatus.FAILED


def _shared_status(errors: Sequence[OneoffError | None]) -> int | None:
    """The status every failure shares: usage (nothing ran), lock busy, or could not run."""
    for kind, status in (
        (UsageError, ExitStatus.USAGE),
        (LockBusy, ExitStatus.LOCK_BUSY),
        (CannotRun, ExitStatus.CANNOT_RUN),
    ):
        if all(isinstance(e, kind) for e in errors):
            return status
    return None


def errors_exit(errors: Iterable[OneoffError]) -> int:
    """For listings over hosts: 0, the one status all errors share, else 255."""
    statuses = {int(e.exit_status) for e in errors}
    if not statuses:
        return ExitStatus.OK
    return statuses.pop() if len(statuses) == 1 else ExitStatus.CANNOT_RUN


def category(result: HostResult) -> str:
    """ok / failed / lost (started, outcome unknown here) / could_not_run / not_started."""
    if result.ok:
        return "ok"
    if isinstance(result.error, NotStarted):
        return "not_started"
    if isinstance(result.error, RunLost):
        return "lost"
    if isinstance(result.error, CannotRun):
        return "could_not_run"
    return "failed"


def summary_counts(results: Sequence[HostResult]) -> dict[str, int]:
    """Counts per category, for the summary line and the JSON summary.

    ``lost`` is present only when a host was lost, so consumers of the 0.1 summary
    (ok, failed, could_not_run, not_started) see the same keys as before.
    """
    counts = dict.fromkeys(("ok", "failed", "lost", "could_not_run", "not_started"), 0)
    for result in results:
        counts[category(result)] += 1
    if not counts["lost"]:
        del counts["lost"]
    return counts


def record_exit(record: Mapping[str, Any]) -> int:
    """A run's status from its record (detached status, audit row), as oneoff exits with it."""
    if record.get("state") == "lost":
        return ExitStatus.CANNOT_RUN
    if record.get("timed_out"):
        return ExitStatus.TIMED_OUT
    if record.get("signal_number"):
        return 128 + int(record["signal_number"])
    status = record.get("status")
    return int(status) if status is not None else ExitStatus.CANNOT_RUN


def record_outcome(record: Mapping[str, Any]) -> str:
    """A run's outcome in words from its record: ``exit 0``, ``timed out``, ``lost``."""
    state = record.get("state")
    if state != "ended":
        return str(state)
    if record.get("timed_out"):
        return "timed out"
    if record.get("client_lost"):
        return "stopped (client lost)"
    if record.get("signal"):
        return f"killed by {record['signal']}"
    return f"exit {record.get('status')}"
