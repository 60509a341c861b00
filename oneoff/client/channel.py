"""Bytes from the agent's side of the channel (its stderr) -> typed events.

Before the agent starts, a login shell or a profile may print anything on stderr;
the sync marker tells that apart from the frame stream, and what came before it is
kept (the last 8 KiB) for the error when the agent never starts.
"""

from __future__ import annotations

import json

from oneoff.client.events import AgentEvent, Event, Output
from oneoff.remote import protocol as proto

BEFORE_SYNC_KEPT = 8192


class AgentChannel:
    """Feed it what arrives on the channel's stderr; it returns whole events."""

    def __init__(self) -> None:
        self.synced = False
        self._before = b""
        self._frames = proto.FrameReader()

    @property
    def before_sync(self) -> str:
        """What a shell printed on stderr before the agent started (for error messages)."""
        return self._before.decode("utf-8", "replace").strip()

    def feed(self, data: bytes) -> list[Event]:
        if not self.synced:
            data = self._sync(data)
            if not self.synced:
                return []
        return [
            event for kind, payload in self._frames.feed(data) if (event := _event(kind, payload))
        ]

    def _sync(self, data: bytes) -> bytes:
        self._before += data
        mark = self._before.find(proto.SYNC)
        if mark < 0:
            self._before = self._before[-BEFORE_SYNC_KEPT:]
            return b""
        self.synced = True
        rest = self._before[mark + len(proto.SYNC) :]
        self._before = self._before[:mark]
        return rest


def _event(kind: bytes, payload: bytes) -> Event | None:
    if kind == proto.STDERR:
        return Output("stderr", payload)
    if kind == proto.STDOUT:  # a PTY run: the terminal's output
        return Output("stdout", payload)
    if kind == proto.EVENT:
        fields = json.loads(payload)
        return AgentEvent(str(fields.pop("event")), fields)
    return None  # heartbeats: their arrival is all that counts
