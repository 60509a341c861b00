"""What the agent tells us, as typed events, and the sink the client reports to.

The channel turns bytes into these events; the reducer folds them into an outcome;
the session forwards output and notices to an injected :class:`Reporter`. Nothing in
the client prints: the output package implements the reporter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from oneoff.outcome import HostResult
    from oneoff.plan.probe import ResolvedRelease
    from oneoff.values import RunSpec

Stream = Literal["stdout", "stderr"]


class Reporter(Protocol):
    """Receives each host's progress as it happens (from several threads at once)."""

    def started(self, host: str, release: ResolvedRelease, spec: RunSpec) -> None: ...
    def output(self, host: str, stream: Stream, data: bytes) -> None: ...
    def notice(self, host: str, message: str) -> None: ...
    def finished(self, result: HostResult) -> None: ...


@dataclass(frozen=True)
class Output:
    """Bytes for one of our streams: the command's stderr, or a PTY's output (stdout)."""

    stream: Stream
    data: bytes


@dataclass(frozen=True)
class AgentEvent:
    """A JSON event from the agent: started, lock_wait, lock_busy, error, plan, detached, exit."""

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)


Event = Output | AgentEvent
