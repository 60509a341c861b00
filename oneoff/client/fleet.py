"""Which hosts run, how many at once, what a failure stops, and every host's result.

The policy is one explicit value. Every host that started is waited for and
reported (never just the first failure); Ctrl-C reaches every running session.
Before a run on several hosts, every host's release is resolved and compared:
hosts on different releases are refused unless ``allow_drift``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Literal

from oneoff.client.connections import Connections
from oneoff.client.journal import LocalJournal
from oneoff.client.session import PROBE_TIMEOUT, Session, probe_only
from oneoff.errors import AgentError, DriftRefused, NotStarted, OneoffError, UsageError
from oneoff.outcome import HostResult
from oneoff.plan.probe import ResolvedRelease
from oneoff.plan.spec import Invocation, all_tasks, build_spec, probe_request
from oneoff.values import RunSpec, new_run_id, operator_identity

if TYPE_CHECKING:
    from oneoff.client.events import Reporter
    from oneoff.config.model import HostSettings, Inventory
    from oneoff.values import Task

Scope = Literal["all", "one"] | None
Probed = dict[str, ResolvedRelease | OneoffError]


def count_or_percent(text: str, what: str) -> int | float:
    """``5`` -> 5 hosts; ``25%`` -> 0.25 of the hosts."""
    try:
        if text.endswith("%"):
            value = float(text[:-1]) / 100
            if not 0 < value <= 1:
                raise ValueError
            return value
        number = int(text)
        if number < (0 if what == "--max-fail" else 1):
            raise ValueError
        return number
    except ValueError:
        raise UsageError(f"{what} {text!r}: expected a number of hosts or a percentage") from None


def _of(value: int | float, total: int) -> int:
    return max(1, round(value * total)) if isinstance(value, float) else value


@dataclass(frozen=True)
class Policy:
    """How a run spreads over hosts: concurrency, rolling batches, what stops it."""

    parallel: int = 32
    batch: int | float | None = None  # hosts per batch, or a fraction of them (25% -> 0.25)
    pause: float = 0.0  # seconds between batches
    fail_fast: bool = False
    max_fail: int | float | None = None  # failures tolerated before no new host starts
    allow_drift: bool = False
    accept_new_host_keys: bool = False
    retries: int = 0

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise UsageError("--parallel must be at least 1")

    def batches(self, hosts: Sequence[str]) -> list[list[str]]:
        size = _of(self.batch, len(hosts)) if self.batch is not None else len(hosts)
        return [list(hosts[i : i + size]) for i in range(0, len(hosts), max(1, size))]

    def failures_allowed(self, total: int) -> int | None:
        if self.fail_fast:
            return 0
        return None if self.max_fail is None else _of(self.max_fail, total)


class Interrupts:
    """Fans a Ctrl-C (and window resizes) out to every live session; fed by the CLI."""

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


class DriftError(DriftRefused):
    """The table of who is on what, built from the probed releases."""

    def __init__(self, releases: Mapping[str, ResolvedRelease | OneoffError | None]) -> None:
        rows = "\n".join(f"  {host:<16} {_release_label(r)}" for host, r in releases.items())
        super().__init__(
            f"the hosts are on different releases:\n{rows}",
            hint="finish the deploy first, or pass --allow-drift",
        )


def _release_label(release: ResolvedRelease | OneoffError | None) -> str:
    if isinstance(release, ResolvedRelease):
        return release.release_id + (f" ({release.revision[:12]})" if release.revision else "")
    if release is None:
        return "(not reached)"
    return f"(error: {release.message})"


def drift(releases: Mapping[str, ResolvedRelease | OneoffError | None]) -> bool:
    """True when the reachable hosts are not all on the same release id."""
    # the revision too: with `current` a plain directory every host's id is "current"
    ids = {(r.release_id, r.revision) for r in releases.values() if isinstance(r, ResolvedRelease)}
    return len(ids) > 1


class ReleaseGate:
    """Holds every session after its probe until all hosts are probed, then compares.

    This is the drift check for ``--all`` at the cost of no extra connection: each
    session pins its release, waits here, and sends its run spec only if all agree.
    """

    def __init__(self, hosts: Sequence[str], interrupts: Interrupts) -> None:
        self.waiting = set(hosts)
        self.releases: dict[str, ResolvedRelease | None] = dict.fromkeys(hosts)
        self.interrupts = interrupts
        self.cond = threading.Condition()
        self.refused: DriftError | None = None

    def arrive(self, release: ResolvedRelease) -> None:
        with self.cond:
            self.releases[release.host] = release
            self._leave(release.host)
            while self.waiting and not self.interrupts.stopping:
                self.cond.wait(0.2)
            if self.interrupts.stopping:
                raise NotStarted("interrupted before the run started", host=release.host)
            if self.refused is not None:
                raise self.refused

    def depart(self, host: str) -> None:
        """A host that failed before its probe (or finished) stops being waited for."""
        with self.cond:
            self._leave(host)

    def _leave(self, host: str) -> None:
        if host in self.waiting:
            self.waiting.discard(host)
            if not self.waiting and drift(self.releases):
                self.refused = DriftError(self.releases)
            self.cond.notify_all()


@dataclass(frozen=True)
class Selection:
    """The hosts that will run, and whether their releases still need comparing."""

    hosts: list[str]
    gate: bool = False  # compare releases in-session (ReleaseGate) instead of beforehand


def choose_hosts(
    inventory: Inventory,
    targets: list[str],
    invocation: Invocation,
    scope: Scope,
    policy: Policy,
    settings: Callable[[str], HostSettings],
    connections: Connections | None = None,
) -> Selection:
    """Design §3: one host as is; ``once`` on the primary and ``each`` everywhere, after the
    drift check; a raw command on several hosts only with --all or --one.

    The probe pass runs on *connections*, which the run then reuses: one connection per
    host per invocation."""
    if len(targets) == 1:
        return Selection(targets)
    if scope is None and invocation.kind != "task":
        raise UsageError(
            f"the target has {len(targets)} hosts ({', '.join(targets[:5])}"
            f"{', ...' if len(targets) > 5 else ''}): "
            "pass --all (every host) or --one (its primary)",
            hint="oneoff never guesses where a raw command runs",
        )
    # a dry run refuses nothing: its plan shows each host's release, drift included
    allow_drift = policy.allow_drift or invocation.mode == "plan"
    if scope == "all" and policy.batch is None and len(targets) <= policy.parallel:
        return Selection(targets, gate=not allow_drift)
    with _pool(connections, settings, policy) as pool:
        probed = probe_hosts(targets, settings, invocation, policy, pool)
    if drift(probed) and not allow_drift:
        raise DriftError(probed)
    primary = inventory.primary(targets)
    if scope is not None:
        return Selection([primary] if scope == "one" else targets)
    reference = probed.get(primary)
    release = reference if isinstance(reference, ResolvedRelease) else None
    task = all_tasks(inventory.tasks, release).get(invocation.words[0])
    return Selection(targets if task is not None and task.run == "each" else [primary])


class _pool:
    """The caller's connections, or a private set closed when the block ends."""

    def __init__(
        self,
        given: Connections | None,
        settings: Callable[[str], HostSettings],
        policy: Policy,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.given = given
        self.own = (
            None
            if given is not None
            else Connections(
                settings,
                accept_new_host_keys=policy.accept_new_host_keys,
                retries=policy.retries,
                stopping=stopping,
            )
        )

    def __enter__(self) -> Connections:
        pool = self.given or self.own
        assert pool is not None
        return pool

    def __exit__(self, *exc: object) -> None:
        if self.own is not None:
            self.own.close()


@dataclass
class _Tally:
    """Failures so far, against what the policy tolerates before no new host starts."""

    allowed: int | None
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, result: HostResult) -> None:
        if result.ok:
            return
        # counted in the worker, so the next host waiting for this worker sees it
        with self.lock:
            self.failures += 1
            if self.allowed is not None and self.failures > self.allowed:
                self.stop.set()


@dataclass
class _Run:
    """Everything one invocation's hosts share while they run."""

    selection: Selection
    settings: Callable[[str], HostSettings]
    invocation: Invocation
    tasks: Mapping[str, Task]
    reporter: Reporter
    interrupts: Interrupts
    connections: Connections
    tally: _Tally
    gate: ReleaseGate | None
    stdin: IO[bytes] | None
    stdin_is_terminal: bool
    operator: dict[str, str] = field(default_factory=operator_identity)
    journal: LocalJournal = field(default_factory=LocalJournal)

    def one(self, host: str) -> HostResult:
        """Run on one host; a bug costs that host its result, never every host's."""
        if self.tally.stop.is_set() or self.interrupts.stopping:
            return self._skip(host)
        session = self._session(host)
        self.interrupts.add(session)
        try:
            result = session.run(
                probe_request(self.settings(host), self.invocation),
                self._planner(host),
                on_release=self.gate.arrive if self.gate is not None else None,
            )
        except Exception as exc:
            error = AgentError(f"internal error: {type(exc).__name__}: {exc}", host=host)
            result = HostResult(host=host, error=error)
            self.reporter.finished(result)
        finally:
            self.interrupts.discard(session)
            if self.gate is not None:
                self.gate.depart(host)
        self.tally.count(result)
        return result

    def _skip(self, host: str) -> HostResult:
        if self.gate is not None:
            self.gate.depart(host)
        why = "interrupted" if self.interrupts.stopping else "an earlier host failed"
        skipped = HostResult(host=host, error=NotStarted(f"not started ({why})", host=host))
        self.reporter.finished(skipped)
        return skipped

    def _session(self, host: str) -> Session:
        s = self.settings(host)
        alone = len(self.selection.hosts) == 1
        return Session(
            host,
            lambda: self.connections.get(host),
            self.reporter,
            stdin=self.stdin if alone else None,
            stdin_is_terminal=self.stdin_is_terminal and alone,
            alive_interval=s.alive_interval,
            alive_count_max=s.alive_count_max,
            journal=self.journal,
        )

    def _planner(self, host: str) -> Callable[[ResolvedRelease], RunSpec]:
        s, run_id = self.settings(host), new_run_id()

        def plan(release: ResolvedRelease) -> RunSpec:
            return build_spec(
                self.invocation, s, release, self.tasks, run_id=run_id, operator=self.operator
            )

        return plan


def run_hosts(
    selection: Selection,
    settings: Callable[[str], HostSettings],
    invocation: Invocation,
    tasks: Mapping[str, Task],
    reporter: Reporter,
    policy: Policy,
    interrupts: Interrupts,
    *,
    stdin: IO[bytes] | None = None,
    stdin_is_terminal: bool = False,
    connections: Connections | None = None,
) -> list[HostResult]:
    """Run on the selected hosts; one result per host, in host order, every host reported."""
    hosts = selection.hosts
    with _pool(connections, settings, policy, lambda: interrupts.stopping) as pool:
        run = _Run(
            selection=selection,
            settings=settings,
            invocation=invocation,
            tasks=tasks,
            reporter=reporter,
            interrupts=interrupts,
            connections=pool,
            tally=_Tally(policy.failures_allowed(len(hosts))),
            gate=ReleaseGate(hosts, interrupts) if selection.gate else None,
            stdin=stdin,
            stdin_is_terminal=stdin_is_terminal,
        )
        results = _schedule(run, policy)
    return [results[h] for h in hosts]


def _schedule(run: _Run, policy: Policy) -> dict[str, HostResult]:
    """Batches in order, up to ``parallel`` hosts at once; later batches wait for a pause."""
    results: dict[str, HostResult] = {}
    batches = policy.batches(run.selection.hosts)
    workers = min(policy.parallel, max(len(b) for b in batches))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for number, batch in enumerate(batches):
            if number and (run.tally.stop.is_set() or run.interrupts.stopping):
                results.update((host, run.one(host)) for host in batch)  # not started
                continue
            if number and policy.pause:
                _sleep(policy.pause, run.interrupts)
            pending: dict[Future[HostResult], str] = {pool.submit(run.one, h): h for h in batch}
            while pending:
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    results[pending.pop(future)] = future.result()
    return results


def _sleep(seconds: float, interrupts: Interrupts) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not interrupts.stopping:
        time.sleep(min(0.2, deadline - time.monotonic()))


def probe_hosts(
    hosts: Sequence[str],
    settings: Callable[[str], HostSettings],
    invocation: Invocation | None,
    policy: Policy,
    connections: Connections | None = None,
) -> Probed:
    """Resolve every host's release in parallel, running nothing (releases, drift, tasks)."""

    def one(host: str) -> ResolvedRelease | OneoffError:
        try:
            transport = pool.get(host)
            return probe_only(transport, probe_request(settings(host), invocation), PROBE_TIMEOUT)
        except OneoffError as exc:
            pool.discard(host)
            return exc

    with (
        _pool(connections, settings, policy) as pool,
        ThreadPoolExecutor(max_workers=min(policy.parallel, max(1, len(hosts)))) as workers,
    ):
        return dict(zip(hosts, workers.map(one, hosts), strict=True))


def drift_refusal(results: Sequence[HostResult]) -> DriftError | None:
    """The drift error if the release gate refused the run (each host carries it)."""
    for result in results:
        if isinstance(result.error, DriftError):
            return result.error
    return None
