"""Which hosts run, how many at once, what a failure stops, and every host's result.

The policy is one explicit value. Every host that started is waited for and
reported (never just the first failure); Ctrl-C reaches every running session.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

from oneoff.audit import LocalJournal
from oneoff.errors import CannotRun, OneoffError, UsageError
from oneoff.plan import Invocation, build_spec, probe_request
from oneoff.result import HostResult, RunSpec, new_run_id, operator_identity
from oneoff.session import Session, probe_only

if TYPE_CHECKING:
    from oneoff.inventory import HostSettings
    from oneoff.output import Reporter
    from oneoff.release import ResolvedRelease
    from oneoff.tasks import Task
    from oneoff.transport.base import Transport


@dataclass(frozen=True)
class Policy:
    """How a run spreads over hosts."""

    parallel: int = 32
    fail_fast: bool = False
    max_fail: int | None = None
    accept_new_host_keys: bool = False
    retries: int = 0

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise UsageError("--parallel must be at least 1")


def make_transport(settings: HostSettings, policy: Policy) -> Transport:
    """SSH for remote hosts, a subprocess for ``transport: local`` (paramiko imported only then)."""
    if settings.transport == "local":
        from oneoff.transport.local import LocalTransport

        return LocalTransport(settings.name)
    from oneoff.transport.ssh import SshTransport

    return SshTransport(settings, accept_new_host_keys=policy.accept_new_host_keys)


class Interrupts:
    """Fans a Ctrl-C out to every live session; registered by the CLI's signal handler."""

    def __init__(self) -> None:
        self.sessions: set[Session] = set()
        self.count = 0
        self.lock = threading.Lock()

    def add(self, session: Session) -> None:
        with self.lock:
            self.sessions.add(session)
            for _ in range(self.count):
                session.interrupt()

    def discard(self, session: Session) -> None:
        with self.lock:
            self.sessions.discard(session)

    def interrupt(self) -> None:
        self.count += 1
        for session in list(self.sessions):
            session.interrupt()

    def resize(self, rows: int, cols: int) -> None:
        for session in list(self.sessions):
            session.resize(rows, cols)

    @property
    def stopping(self) -> bool:
        return self.count > 0


def run_hosts(
    hosts: Sequence[str],
    settings: Callable[[str], HostSettings],
    invocation: Invocation,
    tasks: dict[str, Task],
    reporter: Reporter,
    policy: Policy,
    interrupts: Interrupts,
    *,
    stdin_for: Callable[[str], object] | None = None,
    escape: bool = False,
) -> list[HostResult]:
    """Run on *hosts*, at most ``policy.parallel`` at once; one result per host, in host order."""
    operator = operator_identity()
    journal = LocalJournal()
    results: dict[str, HostResult] = {}
    failures = 0
    stop_starting = threading.Event()

    def one(host: str) -> HostResult:
        if stop_starting.is_set() or interrupts.stopping:
            return HostResult(
                host=host, error=_Skipped("not started (an earlier host failed)", host=host)
            )
        s = settings(host)
        session = Session(
            make_transport(s, policy),
            reporter,
            stdin=stdin_for(host) if stdin_for else None,  # type: ignore[arg-type]
            alive_interval=s.alive_interval,
            alive_count_max=s.alive_count_max,
            retries=policy.retries,
            journal=journal,
            escape=escape,
        )
        interrupts.add(session)
        run_id = new_run_id()

        def plan(release: ResolvedRelease) -> RunSpec:
            return build_spec(invocation, s, release, tasks, run_id=run_id, operator=operator)

        try:
            return session.run(probe_request(s, invocation), plan)
        finally:
            interrupts.discard(session)

    with ThreadPoolExecutor(max_workers=min(policy.parallel, max(1, len(hosts)))) as pool:
        pending: dict[Future[HostResult], str] = {pool.submit(one, h): h for h in hosts}
        while pending:
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                host = pending.pop(future)
                result = future.result()
                results[host] = result
                if not result.ok and not isinstance(result.error, _Skipped):
                    failures += 1
                    if policy.fail_fast or (
                        policy.max_fail is not None and failures > policy.max_fail
                    ):
                        stop_starting.set()
    return [results[h] for h in hosts]


class _Skipped(OneoffError):
    """A host that was not started because of --fail-fast / --max-fail or Ctrl-C."""


def probe_hosts(
    hosts: Sequence[str],
    settings: Callable[[str], HostSettings],
    invocation: Invocation | None,
    policy: Policy,
) -> dict[str, ResolvedRelease | OneoffError]:
    """Resolve every host's release in parallel, running nothing (releases, drift, tasks)."""

    def one(host: str) -> ResolvedRelease | OneoffError:
        s = settings(host)
        transport = make_transport(s, policy)
        try:
            return probe_only(transport, probe_request(s, invocation), s.connect_timeout + 20)
        except OneoffError as exc:
            return exc
        finally:
            transport.close()

    with ThreadPoolExecutor(max_workers=min(policy.parallel, max(1, len(hosts)))) as pool:
        return dict(zip(hosts, pool.map(one, hosts), strict=True))


def drift(releases: dict[str, ResolvedRelease | OneoffError]) -> bool:
    """True when the reachable hosts are not all on the same release id."""
    ids = {r.release_id for r in releases.values() if not isinstance(r, OneoffError)}
    return len(ids) > 1


def exit_code(results: Sequence[HostResult]) -> int:
    """Design §3: one host passes its status through; several give 0, 1 or 255."""
    if len(results) == 1:
        return results[0].exit_code
    if all(r.ok for r in results):
        return 0
    if any(r.lock_busy for r in results) and all(r.ok or r.lock_busy for r in results):
        return 75
    failed = [r for r in results if not r.ok and not isinstance(r.error, CannotRun | _Skipped)]
    if not failed and any(isinstance(r.error, CannotRun) for r in results):
        return 255
    if any(r.interrupted for r in results) and all(r.ok or r.interrupted for r in results):
        return 130
    return 1
