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

import os
import shlex
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from oneoff.errors import UsageError
from oneoff.values import HostResult, Masked

if TYPE_CHECKING:
    from oneoff.client.fleet import Scope
    from oneoff.config.model import Inventory
    from oneoff.output.reporters import Reporter, Stream
    from oneoff.plan.probe import ResolvedRelease
    from oneoff.values import RunSpec


class Results(list[HostResult]):
    """Per-host results in host order, with the CLI's overall verdict."""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self)

    @property
    def exit_code(self) -> int:
        from oneoff.client.fleet import exit_code

        return exit_code(self)


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

    def summary(self, results: Sequence[HostResult], status: int) -> None:
        pass

    def take(self, host: str, stream: Stream) -> bytes:
        return b"".join(self.data.get((host, stream), []))


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
    from oneoff.client import fleet
    from oneoff.config.model import Inventory, find_inventory, load_inventory
    from oneoff.plan.spec import Invocation

    chosen = [c for c in (command, task, script) if c is not None]
    if len(chosen) != 1:
        raise UsageError("pass exactly one of command=, task=, script=")
    if isinstance(command, str):
        raise UsageError(
            "command= is an argv list, not a shell string",
            hint=f"e.g. command={shlex.split(command)!r}",
        )
    if command is not None:
        kind, words = "command", (*command, *args)
    elif task is not None:
        kind, words = "task", (task, *args)
    else:
        kind, words = "script", (str(script), *args)
    if isinstance(inventory, Inventory):
        inv = inventory
    else:
        explicit = str(inventory) if inventory is not None else None
        inv = load_inventory(find_inventory(explicit, os.environ, Path.cwd(), Path.home()))
    targets = inv.select([target] if isinstance(target, str) else list(target))
    invocation = Invocation(
        kind=kind,  # type: ignore[arg-type]
        words=tuple(words),
        extra_env=Masked(dict(env or {})),
        release_id=release,
        timeout=timeout,
        lock=lock,
        lock_wait=lock_wait,
        tty=False,
        audit=audit,
        mode="plan" if dry_run else "run",
    )
    policy = fleet.Policy(
        parallel=parallel,
        batch=batch,
        pause=pause,
        fail_fast=fail_fast,
        max_fail=max_fail,
        allow_drift=allow_drift,
        accept_new_host_keys=accept_new_host_keys,
        retries=retries,
    )
    selection = fleet.choose_hosts(inv, targets, invocation, scope, policy, inv.settings)
    reporter: Reporter
    if capture:
        reporter = _Capture()
    else:
        from oneoff.output.reporters import Terminal, make_reporter

        reporter = make_reporter(Terminal(), selection.hosts)
    interrupts = fleet.Interrupts()
    box: list[list[HostResult]] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            box.append(
                fleet.run_hosts(
                    selection,
                    inv.settings,
                    invocation,
                    inv.tasks,
                    reporter,
                    policy,
                    interrupts,
                )
            )
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=work, name="oneoff-run")
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
    results = box[0]
    refused = fleet.drift_refusal(results)
    if refused is not None:
        raise refused
    usage = [r.error for r in results if isinstance(r.error, UsageError)]
    if results and len(usage) == len(results):
        raise usage[0]  # e.g. an unknown task or release: nothing ran anywhere
    if isinstance(reporter, _Capture):
        results = [
            replace(
                r, stdout=reporter.take(r.host, "stdout"), stderr=reporter.take(r.host, "stderr")
            )
            for r in results
        ]
    if not capture:
        reporter.summary(results, fleet.exit_code(results))
    if interrupted:
        raise KeyboardInterrupt
    return Results(results)
