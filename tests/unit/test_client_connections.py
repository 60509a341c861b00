"""The invocation's connection pool: one connection per host, retries for the retryable only."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from oneoff.client import connections as pool_module
from oneoff.client.connections import Connections, connect_with_retries, make_transport
from oneoff.config.model import HostSettings, Inventory
from oneoff.errors import (
    AuthFailed,
    ConnectError,
    ConnectTimeout,
    HostKeyError,
    KeyLocked,
    NotStarted,
)
from oneoff.transport.base import Transport
from oneoff.transport.fake import FakeHost, FakeTransport
from oneoff.transport.local import LocalTransport

HOSTS = ("web1", "web2")


def inventory(tmp_path: Path) -> Inventory:
    return Inventory(
        path=tmp_path / "inventory.yaml",
        hosts=(*HOSTS, "box"),
        groups={},
        tasks={},
        layers={
            "web1": {"app_root": "/srv/shop"},
            "web2": {"app_root": "/srv/shop"},
            "box": {"app_root": "/srv/shop", "transport": "local"},
        },
        roles={"web1": (), "web2": (), "box": ()},
        primaries=frozenset(),
    )


class Recording(FakeTransport):
    """A fake transport that says when it was closed."""

    def __init__(self, host: FakeHost) -> None:
        super().__init__(host)
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        super().close()


class Pool:
    """Connections over fake hosts, with every transport it made kept for inspection."""

    def __init__(
        self, tmp_path: Path, *, retries: int = 0, stopping: Callable[[], bool] = lambda: False
    ) -> None:
        self.fakes = {name: FakeHost(name) for name in HOSTS}
        self.made: list[Recording] = []
        self.before_make: Callable[[HostSettings], None] = lambda settings: None
        inv = inventory(tmp_path)
        self.connections = Connections(
            inv.settings, retries=retries, stopping=stopping, make=self.make
        )

    def make(self, settings: HostSettings) -> Transport:
        self.before_make(settings)
        transport = Recording(self.fakes[settings.name])
        self.made.append(transport)
        return transport


class Backoff:
    """Stands in for the backoff wait: records each wait asked for, waits none."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.after: Callable[[], None] = lambda: None

    def __call__(self, seconds: float, stopping: Callable[[], bool]) -> None:
        self.waits.append(seconds)
        self.after()


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> Backoff:
    waits = Backoff()
    monkeypatch.setattr(pool_module, "_sleep", waits)
    return waits


def test_two_gets_are_one_connection(tmp_path: Path) -> None:
    pool = Pool(tmp_path)
    first = pool.connections.get("web1")
    assert pool.connections.get("web1") is first
    assert pool.fakes["web1"].connects == 1
    assert pool.connections.opened == 1
    assert len(pool.made) == 1


def test_each_host_has_its_own_connection(tmp_path: Path) -> None:
    pool = Pool(tmp_path)
    assert pool.connections.get("web1") is not pool.connections.get("web2")
    assert [pool.fakes[h].connects for h in HOSTS] == [1, 1]
    assert pool.connections.opened == 2


def test_a_refused_connection_is_retried_with_doubling_backoff(
    tmp_path: Path, backoff: Backoff
) -> None:
    pool = Pool(tmp_path, retries=5)
    fake = pool.fakes["web1"]
    fake.connect_error = ConnectError("connection refused", host="web1")

    def up_after_three_refusals() -> None:
        if len(backoff.waits) == 3:
            fake.connect_error = None

    backoff.after = up_after_three_refusals
    transport = pool.connections.get("web1")
    assert backoff.waits == [1.0, 2.0, 4.0]
    assert pool.fakes["web1"].connects == 4
    assert pool.connections.get("web1") is transport
    assert pool.connections.opened == 1


def test_the_backoff_stops_doubling_at_thirty_seconds_and_the_last_error_is_raised(
    tmp_path: Path, backoff: Backoff
) -> None:
    pool = Pool(tmp_path, retries=7)
    pool.fakes["web1"].connect_error = ConnectTimeout("no answer within 10s", host="web1")
    with pytest.raises(ConnectTimeout):
        pool.connections.get("web1")
    assert backoff.waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert pool.fakes["web1"].connects == 8
    assert pool.connections.opened == 0


def test_no_retries_means_one_attempt(tmp_path: Path, backoff: Backoff) -> None:
    pool = Pool(tmp_path)
    pool.fakes["web1"].connect_error = ConnectError("connection refused", host="web1")
    with pytest.raises(ConnectError):
        pool.connections.get("web1")
    assert (pool.fakes["web1"].connects, backoff.waits) == (1, [])


@pytest.mark.parametrize(
    "error",
    [
        AuthFailed("permission denied (publickey)", host="web1"),
        KeyLocked("~/.ssh/id_ed25519 needs a passphrase", host="web1"),
        HostKeyError("host key changed", host="web1"),
    ],
    ids=["auth", "key-locked", "host-key"],
)
def test_login_and_host_key_failures_are_never_retried(
    tmp_path: Path, backoff: Backoff, error: ConnectError
) -> None:
    pool = Pool(tmp_path, retries=5)
    pool.fakes["web1"].connect_error = error
    with pytest.raises(type(error)) as caught:
        pool.connections.get("web1")
    assert caught.value is error
    assert (pool.fakes["web1"].connects, backoff.waits) == (1, [])


def test_a_failed_connect_is_closed_and_not_kept(tmp_path: Path) -> None:
    pool = Pool(tmp_path)
    pool.fakes["web1"].connect_error = ConnectError("connection refused", host="web1")
    with pytest.raises(ConnectError):
        pool.connections.get("web1")
    assert pool.made[0].closed == 1
    pool.fakes["web1"].connect_error = None
    assert pool.connections.get("web1") is pool.made[1]
    assert pool.connections.opened == 1


def test_a_stop_before_connecting_makes_nothing(tmp_path: Path) -> None:
    pool = Pool(tmp_path, stopping=lambda: True)
    with pytest.raises(NotStarted, match="interrupted before connecting"):
        pool.connections.get("web1")
    assert pool.made == []


def test_a_stop_during_the_backoff_cuts_the_wait_short() -> None:
    fake = FakeHost("web1", connect_error=ConnectError("connection refused", host="web1"))
    stop = threading.Event()
    timer = threading.Timer(0.05, stop.set)
    timer.start()
    began = time.monotonic()
    with pytest.raises(ConnectError):
        connect_with_retries(FakeTransport(fake), retries=3, stopping=stop.is_set)
    assert time.monotonic() - began < 0.9  # the first backoff alone is 1 s
    timer.join()


def test_a_stop_during_the_backoff_makes_no_further_attempt() -> None:
    fake = FakeHost("web1", connect_error=ConnectError("connection refused", host="web1"))
    stop = threading.Event()
    timer = threading.Timer(0.05, stop.set)
    timer.start()
    with pytest.raises(ConnectError):
        connect_with_retries(FakeTransport(fake), retries=3, stopping=stop.is_set)
    timer.join()
    assert fake.connects == 1


def test_discard_closes_and_the_next_get_reconnects(tmp_path: Path) -> None:
    pool = Pool(tmp_path)
    first = pool.connections.get("web1")
    pool.connections.discard("web1")
    assert pool.made[0].closed == 1
    assert pool.connections.get("web1") is not first
    assert pool.fakes["web1"].connects == 2
    pool.connections.discard("web2")  # never opened: nothing to do


def test_close_closes_every_connection_and_the_context_manager_does_too(tmp_path: Path) -> None:
    pool = Pool(tmp_path)
    with pool.connections as connections:
        connections.get("web1")
        connections.get("web2")
        assert [t.closed for t in pool.made] == [0, 0]
    assert [t.closed for t in pool.made] == [1, 1]


def test_threads_asking_for_one_host_at_once_share_one_connection(tmp_path: Path) -> None:
    pool = Pool(tmp_path)
    # widen the window in which a second connect could start
    pool.before_make = lambda settings: time.sleep(0.02)
    got: list[Transport] = []
    threads = [
        threading.Thread(target=lambda: got.append(pool.connections.get("web1"))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(got) == 8
    assert all(t is got[0] for t in got)
    assert pool.fakes["web1"].connects == 1
    assert pool.connections.opened == 1


def test_a_slow_host_does_not_hold_up_another(tmp_path: Path) -> None:
    pool = Pool(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def stuck_on_web1(settings: HostSettings) -> None:
        if settings.name == "web1":
            entered.set()
            release.wait(5)

    pool.before_make = stuck_on_web1
    slow = threading.Thread(target=pool.connections.get, args=("web1",))
    slow.start()
    assert entered.wait(5)
    pool.connections.get("web2")
    assert slow.is_alive()  # web2 connected while web1 was still connecting
    release.set()
    slow.join(5)
    assert pool.connections.opened == 2


def test_a_local_host_gets_the_local_transport(tmp_path: Path) -> None:
    transport = make_transport(inventory(tmp_path).settings("box"))
    assert isinstance(transport, LocalTransport)
    assert transport.host == "box"
