"""The Python API, for scheduled maintenance scripts: the CLI's behaviour as a function.

    import oneoff

    results = oneoff.run("prod", ["python", "manage.py", "clearsessions"], scope="all")
    for r in results:
        print(r.host, r.release_id, r.exit_code, r.stdout)
    if not results.ok:
        raise SystemExit(results.exit_code)

Usage and inventory errors (and refused drift) raise before anything runs; what
happens on each host comes back in its HostResult. Ctrl-C (KeyboardInterrupt) stops
the remote commands first, then is re-raised.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from oneoff.errors import UsageError
from oneoff.outcome import HostResult

if TYPE_CHECKING:
    from oneoff.app.run import RunOutcome, RunReporter
    from oneoff.client.events import Stream
    from oneoff.client.fleet import Interrupts, Scope
    from oneoff.config.model import Inventory
    from oneoff.plan.probe import ResolvedRelease
    from oneoff.plan.spec import Kind
    from oneoff.values import RunSpec


class Results(list[HostResult]):
    """Per-host results in host order, with the CLI's overall verdict."""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self)

    @property
    def exit_code(self) -> int:
        from oneoff.outcome import fleet_exit

        return fleet_exit(self)


class _Capture:
    """A reporter that keeps each host's output instead of printing it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data: dict[tuple[str, Stream], list[bytes]] = {}

    def started(self, host: str, release: ResolvedRelease, spec: RunSpec) -> None:
        pass

    def output(self, host: str, stream: Stream, data: bytes) -> None:
        with self.lock:
            self.data.setdefault((host, stream), []).append(data)

    def notice(self, host: str, message: str) -> None:
        pass

    def finished(self, result: HostResult) -> None:
        pass

    def close(self) -> None:
        pass

    def summary(self, results: Sequence[HostResult], status: int) -> None:
        pass

    def take(self, host: str, stream: Stream) -> bytes:
        return b"".join(self.data.get((host, stream), []))

    def kept(self, result: HostResult) -> HostResult:
        stdout, stderr = self.take(result.host, "stdout"), self.take(result.host, "stderr")
        return replace(result, stdout=stdout, stderr=stderr)


def run(
    target: str | Sequence[str],
    command: Sequence[str] | None = None,
    *,
    task: str | None = None,
    script: str | None = None,
    args: Sequence[str] = (),
    inventory: str | Path | Inventory | None = None,
    scope: Scope = None,
    env: Mapping[str, str] | None = None,
    release: str | None = None,
    timeout: float | None = None,
    lock: str | None = None,
    lock_wait: float = 0.0,
    parallel: int = 32,
    batch: int | float | None = None,
    pause: float = 0.0,
    fail_fast: bool = False,
    max_fail: int | float | None = None,
    allow_drift: bool = False,
    accept_new_host_keys: bool = False,
    retries: int = 0,
    capture: bool = True,
    dry_run: bool = False,
    audit: bool = True,
) -> Results:
    """Run a raw *command*, a *task* or a release *script* (+ *args*) on *target*.

    Exactly one of command, task, script. ``scope`` is ``"all"``, ``"one"`` or None
    (as --all/--one). With ``capture`` (the default) each result carries the host's
    ``stdout`` and ``stderr`` bytes; without it output is printed as the CLI would.
    """
    from oneoff.app import run as app

    kind, words = _what(command, task, script, args)
    request = app.RunRequest(
        targets=(target,) if isinstance(target, str) else tuple(target),
        kind=kind,
        words=words,
        scope=scope,
        env=dict(env or {}),
        release=release,
        timeout=timeout,
        lock=lock,
        lock_wait=lock_wait,
        tty=False,
        audit=audit,
        dry_run=dry_run,
        parallel=parallel,
        batch=batch,
        pause=pause,
        fail_fast=fail_fast,
        max_fail=max_fail,
        allow_drift=allow_drift,
        accept_new_host_keys=accept_new_host_keys,
        retries=retries,
    )
    captured = _Capture() if capture else None

    def reporters(hosts: Sequence[str]) -> RunReporter:
        if captured is not None:
            return captured
        from oneoff.output.reporters import make_reporter
        from oneoff.output.terminal import Terminal

        return make_reporter(Terminal(), hosts)

    def work(interrupts: Interrupts) -> RunOutcome:
        return app.run(request, inventory=inventory, reporters=reporters, interrupts=interrupts)

    outcome, interrupted = _interruptible(work)
    results = outcome.results
    usage = [r.error for r in results if isinstance(r.error, UsageError)]
    if results and len(usage) == len(results):
        raise usage[0]  # e.g. an unknown task or release: nothing ran anywhere
    if captured is not None:
        results = [captured.kept(r) for r in results]
    if interrupted:
        raise KeyboardInterrupt
    return Results(results)


def _what(
    command: Sequence[str] | None, task: str | None, script: str | None, args: Sequence[str]
) -> tuple[Kind, tuple[str, ...]]:
    """Exactly one of command=, task=, script=, as (kind, words)."""
    if sum(c is not None for c in (command, task, script)) != 1:
        raise UsageError("pass exactly one of command=, task=, script=")
    if isinstance(command, str):
        raise UsageError(
            "command= is an argv list, not a shell string",
            hint=f"e.g. command={shlex.split(command)!r}",
        )
    if command is not None:
        return "command", (*command, *args)
    if task is not None:
        return "task", (task, *args)
    return "script", (str(script), *args)


def _interruptible(work: Callable[[Interrupts], RunOutcome]) -> tuple[RunOutcome, bool]:
    """Run *work* in a thread so that Ctrl-C (KeyboardInterrupt, in this thread) reaches
    the remote commands instead of abandoning them; whether it came, with the outcome."""
    from oneoff.client.fleet import Interrupts

    interrupts = Interrupts()
    box: list[RunOutcome] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            box.append(work(interrupts))
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=target, name="oneoff-run")
    worker.start()
    interrupted = False
    while worker.is_alive():
        try:
            worker.join(0.2)
        except KeyboardInterrupt:
            interrupted = True
            interrupts.interrupt()
    if failure:
        raise failure[0]
    return box[0], interrupted
