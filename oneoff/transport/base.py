"""The narrow interface every transport implements: connect, start a script, stream bytes."""

from __future__ import annotations

from typing import Protocol


class RemoteProcess(Protocol):
    """One running ``sh`` script on a host: a byte pipe each way, stderr kept for errors."""

    def send(self, data: bytes) -> None:
        """Write all of *data* to stdin; thread-safe, so whole writes never interleave."""

    def recv(self, size: int, timeout: float | None) -> bytes:
        """Up to *size* bytes of stdout; ``b""`` at EOF; TimeoutError after *timeout* idle."""

    def recv_stderr(self, size: int, timeout: float | None) -> bytes:
        """Like recv, for stderr (where the agent's frames travel)."""

    def exit_status(self) -> int | None:
        """The script's exit status once stdout has ended (None when the host sent none)."""

    def stderr_tail(self) -> bytes:
        """What is left of stderr, up to a few KiB (for error messages when the script died)."""

    def close(self) -> None:
        """Release the channel or subprocess."""


class Transport(Protocol):
    """How oneoff reaches one host."""

    host: str

    def connect(self) -> None:
        """Open the connection; raise ConnectError/HostKeyError naming the host and the fix."""

    def start(self, script: str) -> RemoteProcess:
        """Run a POSIX sh *script* on the host."""

    def key_fingerprint(self) -> str | None:
        """SHA256 fingerprint of the key we logged in with, for the audit trail."""

    def describe(self) -> str:
        """Where this transport goes, for dry runs and errors (``ssh deploy@10.0.0.11:22``)."""

    def close(self) -> None:
        """Close the connection."""
