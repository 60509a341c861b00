"""Which hosts run, the drift gate, the failure policy, and the connections they share.

Every host is a scripted fake that answers a probe-only script with its release and a
run script with that release, the sync marker and the agent's frames, so a whole
``choose_hosts`` + ``run_hosts`` takes milliseconds and its connections can be counted.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from oneoff.client.connections import Connections
from oneoff.client.fleet import (
    DriftError,
    Interrupts,
    Policy,
    Selection,
    choose_hosts,
    count_or_percent,
    drift,
    drift_refusal,
    probe_hosts,
    run_hosts,
)
from oneoff.config.model import HostSettings, Inventory
from oneoff.errors import (
    CannotRun,
    ConnectError,
    ExitStatus,
    NotStarted,
    OneoffError,
    ReleaseError,
    UsageError,
)
from oneoff.outcome import HostResult, fleet_exit
from oneoff.plan.probe import END_MARKER, ResolvedRelease
from oneoff.plan.spec import Invocation
from oneoff.remote import protocol as proto
from oneoff.transport.base import Transport
from oneoff.transport.fake import Answer, FakeHost, FakeTransport
from oneoff.values import Task

HOSTS = ("web1", "web2", "worker1")
PRIMARY = "web2"
RELEASE = "20261128T120000"
MIGRATE = Invocation(kind="task", words=("migrate",))
WARM = Invocation(kind="task", words=("warm_cache",))
RAW = Invocation(kind="command", words=("uptime",))


def make_inventory(tmp_path: Path) -> Inventory:
    return Inventory(
        path=tmp_path / "inventory.yaml",
        hosts=HOSTS,
        groups={"prod": HOSTS},
        tasks={
            "migrate": Task("migrate", ("python", "manage.py", "migrate"), "inventory.yaml:9"),
            "warm_cache": Task("warm_cache", ("python", "warm.py"), "inventory.yaml:12", "each"),
        },
        layers={host: {"app_root": "/srv/shop"} for host in HOSTS},
        roles={host: () for host in HOSTS},
        primaries=frozenset({PRIMARY}),
    )


def probe_stdout(release_id: str) -> bytes:
    rel = f"/srv/shop/releases/{release_id}"
    lines = [f"release={rel}", f"release_id={release_id}", f"venv={rel}/.venv", "revision=abc"]
    return "".join(line + "\n" for line in lines).encode() + END_MARKER


@dataclass
class AppHost(FakeHost):
    """A host with a release: probe scripts get its answer, run scripts also run *status*."""

    release_id: str = RELEASE
    status: int = 0
    probe: bytes | None = None  # the probe's whole answer, instead of the release's
    delay: float = 0.0  # seconds before each answer
    garbage: bytes = b""  # sent between the agent's started and exit events

    def answer(self, script: str) -> Answer:
        self.scripts.append(script)
        time.sleep(self.delay)
        probe = self.probe if self.probe is not None else probe_stdout(self.release_id)
        if "mode=probe\n" in script:
            return Answer(stdout=probe)
        frames = proto.encode_event("started", pid=1, run_id="r") + self.garbage
        frames += proto.encode_event(
            "exit", status=self.status, signal=None, signal_number=None, timed_out=False
        )
        return Answer(stdout=probe + f"out of {self.name}\n".encode(), stderr=proto.SYNC + frames)

    def modes(self) -> list[str]:
        return ["probe" if "mode=probe\n" in s else "run" for s in self.scripts]

    def specs(self) -> list[dict[str, Any]]:
        return [json.loads(d[proto.FRAME.size :]) for d in self.sent if d[:1] == proto.SPEC]


@dataclass
class Finished:
    """A Reporter that keeps the results (the fleet's threads call it at once)."""

    results: list[HostResult] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self, host: str, release: ResolvedRelease, spec: object) -> None:
        pass

    def output(self, host: str, stream: str, data: bytes) -> None:
        pass

    def notice(self, host: str, message: str) -> None:
        pass

    def finished(self, result: HostResult) -> None:
        with self.lock:
            self.results.append(result)


class Fleet:
    """Three fake hosts behind one Connections, and the pieces run_hosts needs."""

    def __init__(self, tmp_path: Path, **hosts: dict[str, Any]) -> None:
        self.inventory = make_inventory(tmp_path)
        self.fakes = {h: AppHost(h, **hosts.get(h, {})) for h in HOSTS}
        self.reporter = Finished()
        self.interrupts = Interrupts()
        self.connections = self.pool()

    def settings(self, host: str) -> HostSettings:
        return self.inventory.settings(host)

    def pool(self) -> Connections:
        return Connections(self.settings, make=self.make)

    def make(self, settings: HostSettings) -> Transport:
        return FakeTransport(self.fakes[settings.name])

    def choose(
        self,
        invocation: Invocation,
        targets: tuple[str, ...] = ("web1", "web2"),
        scope: Any = None,
        policy: Policy | None = None,
    ) -> Selection:
        return choose_hosts(
            self.inventory,
            list(targets),
            invocation,
            scope,
            policy or Policy(),
            self.settings,
            self.connections,
        )

    def run(
        self,
        selection: Selection,
        invocation: Invocation = MIGRATE,
        policy: Policy | None = None,
        connections: Connections | None = None,
    ) -> list[HostResult]:
        return run_hosts(
            selection,
            self.settings,
            invocation,
            self.inventory.tasks,
            self.reporter,
            policy or Policy(),
            self.interrupts,
            connections=connections or self.connections,
        )

    def connects(self) -> dict[str, int]:
        return {h: f.connects for h, f in self.fakes.items()}


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


def test_a_once_task_probes_both_hosts_and_runs_on_the_primary_on_one_connection_each(
    fleet: Fleet,
) -> None:
    selection = fleet.choose(MIGRATE)
    assert selection == Selection([PRIMARY])
    results = fleet.run(selection)
    assert [(r.host, r.status, r.error) for r in results] == [(PRIMARY, 0, None)]
    assert results[0].release_id == RELEASE
    assert fleet.connects() == {"web1": 1, "web2": 1, "worker1": 0}
    assert fleet.connections.opened == 2
    assert fleet.fakes["web2"].modes() == ["probe", "run"]
    assert fleet.fakes["web1"].modes() == ["probe"]
    assert [s["argv"] for s in fleet.fakes["web2"].specs()] == [["python", "manage.py", "migrate"]]


def test_a_run_on_a_pool_of_its_own_would_connect_again(fleet: Fleet) -> None:
    # what sharing saves (and proof that the count above counts): a second connection
    fleet.run(fleet.choose(MIGRATE), connections=fleet.pool())
    assert fleet.connects() == {"web1": 1, "web2": 2, "worker1": 0}


def test_an_each_task_runs_everywhere_on_the_probe_connections(fleet: Fleet) -> None:
    selection = fleet.choose(WARM)
    assert selection == Selection(["web1", "web2"])
    results = fleet.run(selection, WARM)
    assert [(r.host, r.status) for r in results] == [("web1", 0), ("web2", 0)]
    assert fleet.connects() == {"web1": 1, "web2": 1, "worker1": 0}
    assert fleet.fakes["web1"].modes() == fleet.fakes["web2"].modes() == ["probe", "run"]


def test_hosts_on_different_releases_are_refused_before_anything_runs(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, web1={"release_id": "20261127T090000"})
    with pytest.raises(DriftError) as caught:
        fleet.choose(MIGRATE)
    error = caught.value
    assert error.exit_status == ExitStatus.USAGE
    assert "web1" in error.message
    assert "20261127T090000 (abc)" in error.message
    assert f"{RELEASE} (abc)" in error.message
    assert "--allow-drift" in (error.hint or "")
    assert all(mode == "probe" for f in fleet.fakes.values() for mode in f.modes())


def test_allow_drift_runs_on_the_primary_anyway(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, web1={"release_id": "20261127T090000"})
    assert fleet.choose(MIGRATE, policy=Policy(allow_drift=True)) == Selection([PRIMARY])


def test_a_dry_run_refuses_no_drift(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, web1={"release_id": "20261127T090000"})
    dry = Invocation(kind="task", words=("migrate",), mode="plan")
    assert fleet.choose(dry) == Selection([PRIMARY])


def test_a_raw_command_on_several_hosts_needs_all_or_one(fleet: Fleet) -> None:
    with pytest.raises(UsageError, match="pass --all"):
        fleet.choose(RAW)
    assert fleet.connects() == {"web1": 0, "web2": 0, "worker1": 0}


def test_one_picks_the_primary_after_the_drift_check(fleet: Fleet) -> None:
    assert fleet.choose(RAW, scope="one") == Selection([PRIMARY])
    assert fleet.connects() == {"web1": 1, "web2": 1, "worker1": 0}


def test_all_on_few_hosts_leaves_the_comparison_to_the_gate(fleet: Fleet) -> None:
    assert fleet.choose(RAW, scope="all") == Selection(["web1", "web2"], gate=True)
    assert fleet.connects() == {"web1": 0, "web2": 0, "worker1": 0}
    assert fleet.choose(RAW, scope="all", policy=Policy(allow_drift=True)) == Selection(
        ["web1", "web2"], gate=False
    )


def test_all_in_batches_compares_beforehand(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, web1={"release_id": "20261127T090000"})
    with pytest.raises(DriftError):
        fleet.choose(RAW, scope="all", policy=Policy(batch=1))


def test_one_target_is_taken_as_it_is(fleet: Fleet) -> None:
    assert fleet.choose(RAW, targets=("worker1",)) == Selection(["worker1"])
    assert fleet.connects()["worker1"] == 0


def test_the_gate_lets_hosts_on_one_release_run_on_one_connection_each(fleet: Fleet) -> None:
    results = fleet.run(Selection(["web1", "web2"], gate=True), RAW)
    assert [(r.host, r.status) for r in results] == [("web1", 0), ("web2", 0)]
    assert fleet.connects() == {"web1": 1, "web2": 1, "worker1": 0}


def test_the_gate_refuses_drift_on_every_host_before_any_spec_is_sent(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, web1={"release_id": "20261127T090000"})
    results = fleet.run(Selection(["web1", "web2"], gate=True), RAW)
    assert all(isinstance(r.error, DriftError) for r in results)
    assert fleet.fakes["web1"].specs() == fleet.fakes["web2"].specs() == []
    refusal = drift_refusal(results)
    assert refusal is not None
    assert all(r.error is refusal for r in results)
    assert fleet_exit(results) == ExitStatus.USAGE


def test_a_host_that_cannot_connect_does_not_hold_the_gate(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    fleet.fakes["web2"].connect_error = ConnectError("connection refused", host="web2")
    results = fleet.run(Selection(["web1", "web2"], gate=True), RAW)
    assert (results[0].status, results[0].error) == (0, None)
    assert isinstance(results[1].error, ConnectError)
    assert fleet_exit(results) == ExitStatus.CANNOT_RUN


def test_fail_fast_leaves_later_hosts_not_started(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, web1={"status": 3})
    results = fleet.run(Selection(list(HOSTS)), RAW, Policy(parallel=1, fail_fast=True))
    assert results[0].status == 3
    for skipped in results[1:]:
        assert isinstance(skipped.error, NotStarted)
        assert skipped.error.message == "not started (an earlier host failed)"
    assert fleet.connects() == {"web1": 1, "web2": 0, "worker1": 0}
    assert sorted(r.host for r in fleet.reporter.results) == sorted(HOSTS)
    assert fleet_exit(results) == ExitStatus.FAILED


def test_max_fail_tolerates_that_many_failures(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, web1={"status": 3}, web2={"status": 4})
    results = fleet.run(Selection(list(HOSTS)), RAW, Policy(parallel=1, max_fail=1))
    assert [r.status for r in results[:2]] == [3, 4]
    assert isinstance(results[2].error, NotStarted)
    assert fleet.connects()["worker1"] == 0


def test_without_a_failure_policy_every_host_runs(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, web1={"status": 3})
    results = fleet.run(Selection(list(HOSTS)), RAW, Policy(parallel=1))
    assert [r.status for r in results] == [3, 0, 0]
    assert fleet_exit(results) == ExitStatus.FAILED


def test_a_failed_batch_stops_the_later_batches(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, web1={"status": 3})
    results = fleet.run(Selection(list(HOSTS)), RAW, Policy(batch=1, fail_fast=True))
    assert results[0].status == 3
    assert all(isinstance(r.error, NotStarted) for r in results[1:])
    assert fleet.connects() == {"web1": 1, "web2": 0, "worker1": 0}


def test_an_interrupt_before_the_run_starts_no_host(fleet: Fleet) -> None:
    fleet.interrupts.interrupt()
    results = fleet.run(Selection(list(HOSTS)), RAW)
    assert [r.error.message if r.error else None for r in results] == [
        "not started (interrupted)"
    ] * 3
    assert fleet.connects() == {"web1": 0, "web2": 0, "worker1": 0}


def test_results_come_back_in_host_order_not_in_order_of_ending(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, worker1={"delay": 0.05})
    results = fleet.run(Selection(["worker1", "web1", "web2"]), RAW)
    assert [r.host for r in results] == ["worker1", "web1", "web2"]


def test_probe_hosts_gives_each_host_its_release_or_its_error(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    fleet.fakes["web2"].connect_error = ConnectError("connection refused", host="web2")
    probed = probe_hosts(HOSTS, fleet.settings, None, Policy(), fleet.connections)
    assert list(probed) == list(HOSTS)
    web1 = probed["web1"]
    assert isinstance(web1, ResolvedRelease)
    assert (web1.host, web1.release_id) == ("web1", RELEASE)
    assert isinstance(probed["web2"], ConnectError)
    assert fleet.connections.opened == 2  # web1 and worker1, kept for the run


def test_a_host_whose_probe_fails_is_disconnected_for_a_fresh_start(tmp_path: Path) -> None:
    broken = b"error=current_missing\npath=/srv/shop/current\n" + END_MARKER
    fleet = Fleet(tmp_path, web1={"probe": broken})
    probed = probe_hosts(["web1"], fleet.settings, None, Policy(), fleet.connections)
    assert isinstance(probed["web1"], ReleaseError)
    fleet.connections.get("web1")
    assert fleet.fakes["web1"].connects == 2


def test_drift_compares_release_and_revision_and_ignores_errors() -> None:
    def release(host: str, rid: str, revision: str | None = None) -> ResolvedRelease:
        return ResolvedRelease(host, "/srv", f"/srv/{rid}", rid, "v", "p", (), revision)

    error: OneoffError = ConnectError("refused", host="c")
    assert not drift({"a": release("a", "r1"), "b": release("b", "r1"), "c": error})
    assert drift({"a": release("a", "r1"), "b": release("b", "r2")})
    assert drift({"a": release("a", "current", "x1"), "b": release("b", "current", "x2")})
    assert not drift({"a": release("a", "r1"), "c": error})


@pytest.mark.parametrize(
    ("batch", "hosts", "expected"),
    [
        (None, 3, [3]),
        (1, 3, [1, 1, 1]),
        (2, 5, [2, 2, 1]),
        (0.5, 4, [2, 2]),
        (0.25, 3, [1, 1, 1]),  # a fraction is at least one host
    ],
)
def test_batches(batch: int | float | None, hosts: int, expected: list[int]) -> None:
    names = [f"h{i}" for i in range(hosts)]
    batches = Policy(batch=batch).batches(names)
    assert [len(b) for b in batches] == expected
    assert [h for b in batches for h in b] == names


def test_failures_allowed() -> None:
    assert Policy().failures_allowed(10) is None
    assert Policy(fail_fast=True, max_fail=5).failures_allowed(10) == 0
    assert Policy(max_fail=2).failures_allowed(10) == 2
    assert Policy(max_fail=0.3).failures_allowed(10) == 3


@pytest.mark.parametrize(
    ("text", "what", "expected"),
    [
        ("5", "--batch", 5),
        ("25%", "--batch", 0.25),
        ("100%", "--batch", 1.0),
        ("0", "--max-fail", 0),
    ],
)
def test_count_or_percent(text: str, what: str, expected: int | float) -> None:
    assert count_or_percent(text, what) == expected


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("0", "--batch"),
        ("-1", "--max-fail"),
        ("0%", "--batch"),
        ("150%", "--batch"),
        ("x", "--batch"),
    ],
)
def test_count_or_percent_refuses(text: str, what: str) -> None:
    with pytest.raises(UsageError, match=f"{what} '{text}'"):
        count_or_percent(text, what)


def test_parallel_must_be_positive() -> None:
    with pytest.raises(UsageError):
        Policy(parallel=0)


def test_a_host_whose_agent_sends_garbage_still_reaches_the_reporter(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, web1={"garbage": proto.encode_frame(proto.EVENT, b"Traceback")})
    results = fleet.run(Selection(["web1", "web2"]), RAW)
    assert isinstance(results[0].error, CannotRun)
    assert "garbled" in results[0].error.message
    assert results[1].ok
    assert sorted(r.host for r in fleet.reporter.results) == ["web1", "web2"]
