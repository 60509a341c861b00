"""One connection per host per invocation: the probe pass, the drift gate and the run share it.

Opening an SSH connection is most of a run's cost (TCP, key exchange, login, the host's
login shell): a ``once`` task on two hosts probes both and runs on one, on the two
connections it already has. Connection errors are retried with backoff, never a host-key
or login failure (retrying cannot fix those, and would hammer a host that refuses us).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from oneoff.errors import AuthFailed, ConnectError, HostKeyError, NotStarted

if TYPE_CHECKING:
    from oneoff.config.model import HostSettings
    from oneoff.transport.base import Transport

MAX_BACKOFF = 30.0


def make_transport(settings: HostSettings, *, accept_new_host_keys: bool = False) -> Transport:
    """SSH for remote hosts, a subprocess for ``transport: local`` (paramiko imported only then)."""
    if settings.transport == "local":
        from oneoff.transport.local import LocalTransport

        return LocalTransport(settings.name)
    from oneoff.transport.ssh import SshTransport

    return SshTransport(settings, accept_new_host_keys=accept_new_host_keys)


def connect_with_retries(
    transport: Transport, retries: int, stopping: Callable[[], bool] = lambda: False
) -> None:
    """Retry connection errors only (refused, timed out, unreachable), with backoff."""
    delay = 1.0
    for attempt in range(retries + 1):
        try:
            transport.connect()
            return
        except (HostKeyError, AuthFailed):
            raise
        except ConnectError:
            if attempt == retries or stopping():
                raise
            _sleep(delay, stopping)
            if stopping():  # Ctrl-C during the backoff: no further attempt
                raise
            delay = min(delay * 2, MAX_BACKOFF)


def _sleep(seconds: float, stopping: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not stopping() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.2, left))


class Connections:
    """The invocation's connections, opened on first use and closed together at the end."""

    def __init__(
        self,
        settings: Callable[[str], HostSettings],
        *,
        accept_new_host_keys: bool = False,
        retries: int = 0,
        stopping: Callable[[], bool] = lambda: False,
        make: Callable[[HostSettings], Transport] | None = None,
    ) -> None:
        self._settings = settings
        self._make = make or (
            lambda s: make_transport(s, accept_new_host_keys=accept_new_host_keys)
        )
        self._retries = retries
        self._stopping = stopping
        self._open: dict[str, Transport] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.opened = 0  # connections made, for tests and -v

    def get(self, host: str) -> Transport:
        """The host's connected transport; raise ConnectError (typed) when it cannot be had."""
        with self._guard:
            lock = self._locks.setdefault(host, threading.Lock())
        with lock:
            transport = self._open.get(host)
            if transport is not None:
                return transport
            if self._stopping():
                raise NotStarted("interrupted before connecting", host=host)
            transport = self._make(self._settings(host))
            try:
                connect_with_retries(transport, self._retries, self._stopping)
            except BaseException:
                transport.close()
                raise
            with self._guard:
                self.opened += 1
                self._open[host] = transport
            return transport

    def discard(self, host: str) -> None:
        """Close one host's connection (it failed under us: the next use reconnects)."""
        with self._guard:
            transport = self._open.pop(host, None)
        if transport is not None:
            transport.close()

    def close(self) -> None:
        with self._guard:
            transports, self._open = list(self._open.values()), {}
        for transport in transports:
            transport.close()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
