"""The local transport: the same probe and agent, through a subprocess on this machine.

For cron on the server itself and for the demo. The script runs in its own
session so a Ctrl-C on the terminal reaches the agent only through the protocol,
exactly as it would over SSH.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
from typing import IO

from oneoff.scripts import sh_argv

STDERR_TAIL = 8192


class LocalProcess:
    """A ``/bin/sh -c SCRIPT`` child with pipes, implementing RemoteProcess."""

    def __init__(self, script: str) -> None:
        self._proc = subprocess.Popen(
            sh_argv(script),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,
        )
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        with self._lock:
            self._proc.stdin.write(data)

    def _recv(self, pipe: IO[bytes] | None, size: int, timeout: float | None) -> bytes:
        assert pipe is not None
        fd = pipe.fileno()
        readable, _, _ = select.select([fd], [], [], timeout)
        if not readable:
            raise TimeoutError
        return os.read(fd, size)

    def recv(self, size: int, timeout: float | None) -> bytes:
        return self._recv(self._proc.stdout, size, timeout)

    def recv_stderr(self, size: int, timeout: float | None) -> bytes:
        return self._recv(self._proc.stderr, size, timeout)

    def exit_status(self) -> int | None:
        return self._proc.wait()

    def stderr_tail(self) -> bytes:
        chunks = []
        with contextlib.suppress(TimeoutError, OSError):
            while chunk := self.recv_stderr(65536, 1.0):
                chunks.append(chunk)
        return b"".join(chunks)[-STDERR_TAIL:]

    def close(self) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # the agent stops its command; this is a last resort
            self._proc.kill()
            self._proc.wait()


class LocalTransport:
    """Runs scripts on this machine, as the current user."""

    def __init__(self, host: str) -> None:
        self.host = host

    def connect(self) -> None:
        """Nothing to open."""

    def start(self, script: str) -> LocalProcess:
        return LocalProcess(script)

    def key_fingerprint(self) -> str | None:
        return None

    def describe(self) -> str:
        return "local"

    def close(self) -> None:
        """Nothing to close."""
