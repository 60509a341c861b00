"""One run, start to end, shared by the command line and the Python API.

Load the inventory, select the targets, decide which hosts run (and whether their
releases must be compared first), run them through the fleet, refuse drift, and fold
the results into oneoff's exit status. The caller brings what is its own: the reporter
(made once the hosts are known: raw for one, prefixed for several), the interrupt
fan-out its signal handlers or KeyboardInterrupt feed, and what our side of the
terminal offers (stdin, whether someone is typing, TERM, the window size).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING, Protocol

from oneoff.app.inventory import open_inventory
from oneoff.client.events import Reporter
from oneoff.errors import UsageError
from oneoff.names import LOCK_NAME_RULE, is_lock_name
from oneoff.outcome import fleet_exit

if TYPE_CHECKING:
    from oneoff.app.inventory import InventorySource
    from oneoff.client.fleet import Interrupts, Policy, Scope
    from oneoff.config.model import HostSettings, Inventory
    from oneoff.outcome import HostResult
    from oneoff.plan.spec import Invocation, Kind


class RunReporter(Reporter, Protocol):
    """A run's events, and then its end: ``close()`` (the terminal is ours again), then
    the ``summary`` (every result and the exit status)."""

    def close(self) -> None: ...
    def summary(self, results: Sequence[HostResult], status: int) -> None: ...


ReporterFactory = Callable[[Sequence[str]], RunReporter]
"""Makes the run's reporter from the hosts that will run."""


@dataclass(frozen=True)
class RunRequest:
    """What to run, where and how: everything the user decided, typed.

    ``kind`` and ``words``: a task (NAME, *ARGS), a raw command (argv) or a release
    script (PATH, *ARGS). ``None`` means "not given" (the task's or the host's setting
    applies). Durations are seconds; ``batch`` and ``max_fail`` are a number of hosts or
    a fraction of them (25% is 0.25).
    """

    targets: tuple[str, ...]
    kind: Kind
    words: tuple[str, ...]
    scope: Scope = None
    env: Mapping[str, str] = field(default_factory=dict)
    release: str | None = None
    timeout: float | None = None
    kill_after: float | None = None
    lock: str | None = None
    lock_wait: float = 0.0
    tty: bool | None = None
    detach: bool = False
    dry_run: bool = False
    audit: bool = True
    parallel: int = 32
    batch: int | float | None = None
    pause: float = 0.0
    fail_fast: bool = False
    max_fail: int | float | None = None
    allow_drift: bool = False
    accept_new_host_keys: bool = False
    retries: int = 0


@dataclass(frozen=True)
class Console:
    """What our side offers a run; the default is nobody there (the API, a cron job)."""

    stdin: IO[bytes] | None = None  # forwarded to the command when exactly one host runs
    stdin_is_terminal: bool = False  # a PTY run then reads keystrokes (and the ~. escape)
    interactive: bool = False  # our stdin and stdout are terminals (design §3)
    term: str | None = None
    winsize: tuple[int, int] | None = None


@dataclass(frozen=True)
class RunOutcome:
    """Every host's result, in host order, and the status oneoff exits with."""

    results: list[HostResult]
    status: int


def run(
    request: RunRequest,
    *,
    inventory: InventorySource,
    reporters: ReporterFactory,
    interrupts: Interrupts,
    console: Console = Console(),
) -> RunOutcome:
    """Run *request*; usage and inventory errors (and refused drift) raise, what
    happened on each host comes back in its result. The reporter gets every event,
    then ``close()``, then the ``summary``, also when the drift check refuses the run."""
    from oneoff.client import fleet
    from oneoff.client.connections import Connections

    inv = open_inventory(inventory)
    invocation = _invocation(request, console)
    policy = _policy(request)
    settings = _settings(inv, request)
    targets = inv.select(request.targets)
    # one connection per host for the probe pass, the drift gate and the run
    with Connections(
        settings,
        accept_new_host_keys=policy.accept_new_host_keys,
        retries=policy.retries,
        stopping=lambda: interrupts.stopping,
    ) as connections:
        selection = fleet.choose_hosts(
            inv, targets, invocation, request.scope, policy, settings, connections
        )
        invocation = _for_hosts(invocation, selection.hosts, console)
        reporter = reporters(selection.hosts)
        forward = len(selection.hosts) == 1 and invocation.mode == "run"
        try:
            results = fleet.run_hosts(
                selection,
                settings,
                invocation,
                inv.tasks,
                reporter,
                policy,
                interrupts,
                stdin=console.stdin if forward else None,
                stdin_is_terminal=console.stdin_is_terminal and forward,
                connections=connections,
            )
        finally:
            reporter.close()
    refused = fleet.drift_refusal(results)
    status = int(refused.exit_status) if refused is not None else fleet_exit(results)
    reporter.summary(results, status)
    if refused is not None:
        raise refused
    return RunOutcome(results, status)


def _invocation(request: RunRequest, console: Console) -> Invocation:
    from oneoff.plan.spec import Invocation
    from oneoff.values import Masked

    if request.kind == "script" and not request.words:
        raise UsageError("run needs a script path", hint="oneoff -H HOST run scripts/fix.py [ARGS]")
    if request.lock is not None and not is_lock_name(request.lock):
        raise UsageError(f"--lock {request.lock!r} is not a lock name", hint=LOCK_NAME_RULE)
    return Invocation(
        kind=request.kind,
        words=request.words,
        extra_env=Masked(dict(request.env)),
        release_id=request.release,
        timeout=request.timeout,
        lock=request.lock,
        lock_wait=request.lock_wait,
        tty=request.tty,
        audit=request.audit,
        mode="plan" if request.dry_run else "run",
        detach=request.detach,
        term=console.term,
        winsize=console.winsize if request.tty is not False else None,
    )


def _policy(request: RunRequest) -> Policy:
    from oneoff.client.fleet import Policy

    return Policy(
        parallel=request.parallel,
        batch=request.batch,
        pause=request.pause,
        fail_fast=request.fail_fast,
        max_fail=request.max_fail,
        allow_drift=request.allow_drift,
        accept_new_host_keys=request.accept_new_host_keys,
        retries=request.retries,
    )


def _settings(inventory: Inventory, request: RunRequest) -> Callable[[str], HostSettings]:
    from oneoff.config.model import Overrides

    overrides = Overrides(
        host_key_policy="accept-new" if request.accept_new_host_keys else None,
        kill_after=request.kill_after,
    )

    def settings(host: str) -> HostSettings:
        return inventory.settings(host, overrides)

    return settings


def _for_hosts(invocation: Invocation, hosts: Sequence[str], console: Console) -> Invocation:
    """What depends on how many hosts run: a terminal only for one (design §3)."""
    if invocation.detach and invocation.tty:
        raise UsageError(
            "--detach runs without a terminal: nobody is there to type into it",
            hint="drop -t (or use `oneoff logs -f` to watch the run)",
        )
    if invocation.tty and len(hosts) > 1:
        raise UsageError(
            "a terminal (-t) cannot be shared by several hosts", hint="pick one host, or drop -t"
        )
    # a task's `tty` and -t/-T decide otherwise (see plan.spec.build_spec)
    one = len(hosts) == 1
    return replace(invocation, interactive=console.interactive and one, one_host=one)
