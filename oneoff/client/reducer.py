"""Fold the agent's events into one host's result: pure, so every verdict is unit-tested.

The session feeds each :class:`AgentEvent` to :meth:`RunReducer.apply` (which returns a
notice to show, if any) and, when the channel ends, asks :meth:`RunReducer.verdict`
for the :class:`HostResult` or the error that explains why there is none.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from oneoff.client.events import AgentEvent
from oneoff.errors import (
    AgentError,
    ConnectionLost,
    LockBusy,
    OneoffError,
    ReleaseError,
    RunLost,
    SpawnError,
)
from oneoff.outcome import HostResult


@dataclass(frozen=True)
class Ending:
    """How the channel ended, as the session saw it."""

    synced: bool  # the agent started and sent its sync marker
    before_sync: str  # what a shell printed on stderr before that
    exit_status: int | None = None  # the channel's, when the agent never started
    interrupted: bool = False  # we sent a stop signal (Ctrl-C, SIGTERM)
    output_closed: bool = False  # our stdout's reader went away (`| head`)


class RunReducer:
    """The state of one run as the agent reports it."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.outcome: Mapping[str, Any] | None = None
        self.plan: Mapping[str, Any] | None = None
        self.failure: OneoffError | None = None
        self.started = False  # the command is running (or ran) on the host

    def apply(self, event: AgentEvent) -> str | None:
        """Take one event; return a line to tell the operator now, if any."""
        name, fields = event.name, event.fields
        if name == "exit":
            self.outcome = fields
        elif name == "detached":
            self.outcome = {"status": 0, "detached": True}
        elif name == "plan":
            self.plan = fields
        elif name == "started":
            self.started = True
        elif name == "lock_wait":
            return lock_message(fields, waiting=True)
        elif name == "lock_busy":
            self.failure = LockBusy(
                lock_message(fields, waiting=False),
                host=self.host,
                hint="wait for it, or pass --lock-wait DURATION",
            )
        elif name == "error":
            self.failure = agent_error(self.host, fields)
        return None

    @property
    def settled(self) -> bool:
        """The agent has said how the run ended: silence now is no longer a lost link."""
        return self.outcome is not None or self.plan is not None

    def verdict(self, ran: HostResult, ending: Ending) -> HostResult:
        """The result of the run (*ran* carries host, release, duration), or raise why not."""
        if not ending.synced:
            detail = _last_line(ending.before_sync) or f"exit status {ending.exit_status}"
            raise AgentError(
                f"the agent did not start: {detail}", host=self.host, hint="run with --debug"
            )
        if self.failure is not None:
            raise self.failure
        if self.plan is not None:
            return replace(ran, status=0, plan=self.plan)
        if self.outcome is None:
            raise self._no_outcome(ending)
        if self.outcome.get("client_lost"):
            raise RunLost("the agent lost contact with us and stopped the command", host=self.host)
        if ending.output_closed:  # as a local pipeline reports a writer killed by SIGPIPE
            return replace(ran, signal="SIGPIPE", signal_number=int(signal.SIGPIPE))
        return replace(
            ran,
            status=self.outcome.get("status"),
            signal=self.outcome.get("signal"),
            signal_number=self.outcome.get("signal_number"),
            timed_out=bool(self.outcome.get("timed_out")),
            interrupted=ending.interrupted and self.outcome.get("status") != 0,
            detached=bool(self.outcome.get("detached")),
        )

    def _no_outcome(self, ending: Ending) -> OneoffError:
        if self.started:
            return lost(self.host, "the connection ended before the command reported its exit")
        if ending.interrupted:
            return ConnectionLost(
                "interrupted; the connection closed before the command ended", host=self.host
            )
        detail = _last_line(ending.before_sync)
        return AgentError(
            "the agent ended without reporting an exit status" + (f": {detail}" if detail else ""),
            host=self.host,
            hint="run with --debug",
        )


def lost(host: str, why: str) -> RunLost:
    """The link died after the command started: say so, and where its outcome is kept."""
    return RunLost(
        f"{why}; the command had started and its outcome is unknown here",
        host=host,
        hint="the agent stops it when our heartbeats stop; see `oneoff audit -H "
        f"{host}` (or `oneoff logs RUN_ID` for a detached run)",
    )


def _last_line(text: str) -> str:
    return text.splitlines()[-1] if text else ""


def lock_message(event: Mapping[str, Any], *, waiting: bool) -> str:
    holder = event.get("holder") or {}
    operator = holder.get("operator") or {}
    who = "@".join(filter(None, [operator.get("user"), operator.get("machine")])) or "unknown"
    details = (
        f"held by {who} since {holder.get('since', '?')}, run {holder.get('run_id', '?')}: "
        f"{holder.get('command', '?')}"
    )
    verb = "waiting for lock" if waiting else "lock"
    tail = "" if waiting else " is busy"
    return f"{verb} {event.get('lock')!r}{tail} ({details})"


def agent_error(host: str, event: Mapping[str, Any]) -> OneoffError:
    """The agent's ``error`` event as the error that names what to fix."""
    kind = event.get("kind")
    message = str(event.get("message", "the agent failed"))
    if kind == "env_file":
        return ReleaseError(
            f"env file {message}", host=host, hint="fix that line; values are never shown"
        )
    if kind == "state_dir":
        hint = "fix its permissions or set state_dir"
        return ReleaseError(
            message,
            host=host,
            hint=hint + (" (a lock lives there)" if event.get("lock") else ", or pass --no-audit"),
        )
    if kind == "spawn":
        return SpawnError(
            message,
            host=host,
            status=int(event.get("status", 127)),
            hint="check the command and the venv's bin/",
        )
    return AgentError(message, host=host)
