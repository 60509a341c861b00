"""The built-in commands, each with its own options only: ``releases``, ``tasks``,
``hosts``, ``audit`` (what is deployed, runnable, where, what ran) and ``ps``, ``logs``,
``kill`` (detached runs). Each parses, calls its use case in ``oneoff.app`` and shows
the result through ``oneoff.output.views``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import click

from oneoff.cli import options as o

if TYPE_CHECKING:
    from oneoff.app.inventory import Access
    from oneoff.app.listings import Listing
    from oneoff.output.views import Record

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _need_target(name: str, targets: Sequence[str], what: str = "HOST|GROUP") -> None:
    if not targets:
        from oneoff.errors import UsageError

        raise UsageError(f"`oneoff {name}` needs a target", hint=f"oneoff {name} -H {what}")


def _access(accept_new_host_keys: bool, parallel: int = 32) -> Access:
    from oneoff.app.inventory import Access

    return Access(accept_new_host_keys=accept_new_host_keys, parallel=parallel)


def _show(listing: Listing, render: Callable[[Sequence[Record]], str], as_json: bool) -> int:
    """Problems on stderr, then the records (as a table, or one JSON object a line)."""
    from oneoff.output.terminal import Terminal
    from oneoff.output.views import show_listing

    terminal = Terminal()
    for problem in listing.problems:
        terminal.message(problem)
    show_listing(terminal, listing.records, render, as_json=as_json)
    return listing.status


@click.command(context_settings=CONTEXT)
@o.GLOBAL
@o.JSON
def hosts(targets: tuple[str, ...], inventory: str | None, as_json: bool, **_: object) -> int:
    """The inventory's hosts: address, groups, roles, primary (no connection)."""
    from oneoff.app import listings
    from oneoff.output.views import hosts_table

    return _show(listings.hosts(inventory, targets), hosts_table, as_json)


@click.command(context_settings=CONTEXT)
@o.GLOBAL
@o.RELEASE
@o.PARALLEL
@o.JSON
@o.ACCEPT_NEW_HOST_KEYS
def releases(
    targets: tuple[str, ...],
    inventory: str | None,
    release_id: str | None,
    parallel: int,
    as_json: bool,
    accept_new_host_keys: bool,
    **_: object,
) -> int:
    """Each host's release, revision, deploy time and Python; drift marked `*`."""
    from oneoff.app import listings
    from oneoff.output.views import releases_table

    _need_target("releases", targets)
    access = _access(accept_new_host_keys, parallel)
    listing = listings.releases(inventory, targets, release_id=release_id, access=access)
    return _show(listing, releases_table, as_json)


@click.command(context_settings=CONTEXT)
@o.GLOBAL
@o.RELEASE
@o.PARALLEL
@o.JSON
@o.ACCEPT_NEW_HOST_KEYS
def tasks(
    targets: tuple[str, ...],
    inventory: str | None,
    release_id: str | None,
    parallel: int,
    as_json: bool,
    accept_new_host_keys: bool,
    **_: object,
) -> int:
    """Every task each host's release can run, where it is defined, what it overrides."""
    from oneoff.app import listings
    from oneoff.output.views import tasks_table

    _need_target("tasks", targets)
    access = _access(accept_new_host_keys, parallel)
    listing = listings.tasks(inventory, targets, release_id=release_id, access=access)
    return _show(listing, tasks_table, as_json)


@click.command(context_settings=CONTEXT)
@o.GLOBAL
@o.SINCE
@o.PARALLEL
@o.JSON
@o.ACCEPT_NEW_HOST_KEYS
def audit(
    targets: tuple[str, ...],
    inventory: str | None,
    since: float | None,
    parallel: int,
    as_json: bool,
    accept_new_host_keys: bool,
    **_: object,
) -> int:
    """The hosts' audit trail: one row per run, oldest first."""
    from oneoff.app import listings
    from oneoff.output.views import audit_table

    _need_target("audit", targets)
    access = _access(accept_new_host_keys, parallel)
    listing = listings.audit(inventory, targets, since=since, access=access)
    return _show(listing, audit_table, as_json)


@click.command(context_settings=CONTEXT)
@o.GLOBAL
@o.JSON
@o.ACCEPT_NEW_HOST_KEYS
def ps(
    targets: tuple[str, ...],
    inventory: str | None,
    as_json: bool,
    accept_new_host_keys: bool,
    **_: object,
) -> int:
    """Detached runs on the target's hosts (started with --detach), newest first."""
    from oneoff.app import runs
    from oneoff.output.views import ps_table

    _need_target("ps", targets, "HOST")
    listing = runs.ps(inventory, targets, access=_access(accept_new_host_keys))
    return _show(listing, ps_table, as_json)


@click.command(context_settings=CONTEXT)
@o.GLOBAL
@o.RUN_ID
@o.FOLLOW
@o.TIMESTAMPS
@o.ACCEPT_NEW_HOST_KEYS
def logs(
    targets: tuple[str, ...],
    inventory: str | None,
    run_id: str,
    follow: bool,
    timestamps: bool,
    accept_new_host_keys: bool,
    **_: object,
) -> int:
    """A detached run's output; with -f, until it ends (then exit with its status)."""
    from oneoff.app import runs
    from oneoff.output.terminal import Terminal

    _need_target("logs", targets, "HOST RUN_ID")
    access = _access(accept_new_host_keys)
    return runs.logs(
        inventory,
        targets,
        run_id,
        Terminal(),
        follow=follow,
        timestamps=timestamps,
        access=access,
    )


@click.command(context_settings=CONTEXT)
@o.GLOBAL
@o.RUN_ID
@o.ACCEPT_NEW_HOST_KEYS
def kill(
    targets: tuple[str, ...],
    inventory: str | None,
    run_id: str,
    accept_new_host_keys: bool,
    **_: object,
) -> int:
    """Stop a detached run: SIGTERM, then SIGKILL after its kill_after."""
    from oneoff.app import runs
    from oneoff.output.terminal import Terminal

    _need_target("kill", targets, "HOST RUN_ID")
    killed = runs.kill(inventory, targets, run_id, access=_access(accept_new_host_keys))
    Terminal().message(killed.message)
    return killed.status


COMMANDS: tuple[click.Command, ...] = (releases, tasks, hosts, audit, ps, logs, kill)
