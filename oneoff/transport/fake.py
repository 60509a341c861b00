"""A scripted transport for unit tests: what the host would answer, without a host.

Each :class:`FakeHost` holds the answers its scripts get (stdout and stderr bytes, an
exit status) and records what was sent, so the session, the fleet and the connection
pool are tested in milliseconds, with no process, socket or sshd.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from oneoff.errors import ConnectError


@dataclass
class Answer:
    """What one started script sends back."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_status: int | None = 0


@dataclass
class FakeHost:
    """The scripted side: answers in order (the last one repeats), connection errors."""

    name: str
    answers: list[Answer] = field(default_factory=list)
    connect_error: ConnectError | None = None
    connects: int = 0
    scripts: list[str] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)

    def answer(self, script: str) -> Answer:
        self.scripts.append(script)
        if not self.answers:
            return Answer()
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class FakeProcess:
    """A RemoteProcess whose streams are the scripted answer, served in small pieces."""

    def __init__(self, host: FakeHost, answer: Answer, piece: int = 7) -> None:
        self._host = host
        self._status = answer.exit_status
        self._out = _pieces(answer.stdout, piece)
        self._err = _pieces(answer.stderr, piece)
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self._lock:
            self._host.sent.append(data)

    def recv(self, size: int, timeout: float | None) -> bytes:
        return self._out.popleft() if self._out else b""

    def recv_stderr(self, size: int, timeout: float | None) -> bytes:
        return self._err.popleft() if self._err else b""

    def exit_status(self) -> int | None:
        return self._status

    def stderr_tail(self) -> bytes:
        return b"".join(self._err)

    def close(self) -> None:
        pass


def _pieces(data: bytes, size: int) -> deque[bytes]:
    """Cut into pieces, so readers are tested against data split anywhere."""
    return deque(data[i : i + size] for i in range(0, len(data), size))


class FakeTransport:
    """A Transport over a :class:`FakeHost`."""

    def __init__(self, host: FakeHost, on_start: Callable[[str], None] | None = None) -> None:
        self.host = host.name
        self._fake = host
        self._connected = False
        self._on_start = on_start

    def connect(self) -> None:
        if self._connected:
            return
        self._fake.connects += 1
        if self._fake.connect_error is not None:
            raise self._fake.connect_error
        self._connected = True

    def start(self, script: str) -> FakeProcess:
        self.connect()
        if self._on_start is not None:
            self._on_start(script)
        return FakeProcess(self._fake, self._fake.answer(script))

    def key_fingerprint(self) -> str | None:
        return None

    def describe(self) -> str:
        return f"fake {self.host}"

    def close(self) -> None:
        self._connected = False
