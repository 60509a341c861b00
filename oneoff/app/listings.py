"""``releases``, ``tasks``, ``hosts`` and ``audit``: what is deployed, runnable, where, and
what ran. Each returns a :class:`Listing`, the records ``--json`` prints one per line;
``oneoff.output.views`` turns the same records into the table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oneoff.app.inventory import DEFAULT_ACCESS, Access, open_inventory
from oneoff.errors import ExitStatus, OneoffError
from oneoff.outcome import errors_exit
from oneoff.plan.probe import ResolvedRelease

if TYPE_CHECKING:
    from oneoff.app.inventory import InventorySource
    from oneoff.client.connections import Connections
    from oneoff.config.model import HostSettings, Inventory

Found = dict[str, ResolvedRelease | OneoffError]


@dataclass(frozen=True)
class Listing:
    """Rows as records, the problems met on the way (a line each), and the exit status."""

    records: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    status: int = 0


def hosts(inventory: InventorySource, targets: Sequence[str] = ()) -> Listing:
    """The inventory's hosts (or the ones *targets* select), without connecting."""
    inv = open_inventory(inventory)
    names = inv.select(targets) if targets else list(inv.hosts)
    return Listing([_host_record(inv, name) for name in names])


def _host_record(inventory: Inventory, name: str) -> dict[str, Any]:
    s = inventory.settings(name)
    if s.transport == "local":
        address = "local"
    else:
        address = (f"{s.user}@" if s.user else "") + s.hostname + (f":{s.port}" if s.port else "")
    return {
        "host": name,
        "address": address,
        "groups": inventory.groups_of(name),
        "roles": list(s.roles),
        "primary": s.primary,
        "app_root": s.app_root,
    }


def _probe(
    inventory: Inventory, targets: Sequence[str], release_id: str | None, access: Access
) -> Found:
    from oneoff.client import fleet
    from oneoff.plan.spec import Invocation

    invocation = Invocation(kind="task", words=("-",), release_id=release_id)
    hosts = inventory.select(targets)
    return fleet.probe_hosts(
        hosts, lambda h: access.settings(inventory, h), invocation, access.policy
    )


def _errors(found: Found) -> list[OneoffError]:
    return [r for r in found.values() if isinstance(r, OneoffError)]


def majority_release(found: Found) -> str | None:
    """The release most reachable hosts run: the reference a drifting host is marked against.

    On a tie the most recently deployed release wins, so the hosts left behind by an
    unfinished deploy are the ones marked.
    """
    ok = [r for r in found.values() if isinstance(r, ResolvedRelease)]
    ids = [r.release_id for r in ok]
    deployed = {
        r.release_id: r.deployed_at or 0 for r in sorted(ok, key=lambda r: r.deployed_at or 0)
    }
    return max(set(ids), key=lambda i: (ids.count(i), deployed[i], i)) if ids else None


def releases(
    inventory: InventorySource,
    targets: Sequence[str],
    *,
    release_id: str | None = None,
    access: Access = DEFAULT_ACCESS,
) -> Listing:
    """Each host's release, revision, deploy time and Python; ``drift`` against the majority.

    Exits 0 when every host was probed, else with the status its errors share (2 for an
    unknown ``release_id`` everywhere, 255 when a host could not be reached).
    """
    found = _probe(open_inventory(inventory), targets, release_id, access)
    common = majority_release(found)
    records = [_release_record(host, r, common) for host, r in found.items()]
    return Listing(records, status=errors_exit(_errors(found)))


def _release_record(
    host: str, release: ResolvedRelease | OneoffError, common: str | None
) -> dict[str, Any]:
    if isinstance(release, OneoffError):
        return {"host": host, "error": release.message, "hint": release.hint}
    return {
        "host": host,
        "release": release.release_id,
        "revision": release.revision,
        "deployed_at": release.deployed_at,
        "path": release.path,
        "python": release.python_version,
        "drift": release.release_id != common,
    }


def tasks(
    inventory: InventorySource,
    targets: Sequence[str],
    *,
    release_id: str | None = None,
    access: Access = DEFAULT_ACCESS,
) -> Listing:
    """Every task of each host's release, sorted by name, with what each one overrides."""
    from oneoff.plan.tasks import definitions, release_tasks
    from oneoff.scripts import render

    inv = open_inventory(inventory)
    found = _probe(inv, targets, release_id, access)
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for host, r in found.items():
        if isinstance(r, OneoffError):
            problems.append(str(r))
            continue
        sources = release_tasks(r)
        problems += [f"{host}: {problem} (other tasks still work)" for problem in sources.problems]
        for name, (task, *shadowed) in definitions(inv.tasks, sources).items():
            records.append(
                {
                    "host": host,
                    "task": name,
                    "command": render(task.command),
                    "source": task.source,
                    "overrides": [t.source for t in shadowed],
                    "run": task.run,
                    "lock": task.lock,
                    "timeout": task.timeout,
                    "tty": task.tty,
                    "description": task.description,
                }
            )
    return Listing(records, problems, errors_exit(_errors(found)))


def audit(
    inventory: InventorySource,
    targets: Sequence[str],
    *,
    since: float | None = None,
    access: Access = DEFAULT_ACCESS,
) -> Listing:
    """Each host's audit trail, one record per run, oldest first; *since* in seconds."""
    from oneoff.client import journal as trail

    inv = open_inventory(inventory)
    hosts = inv.select(targets)
    found = access.each_host(inv, hosts, _read_trail)
    errors = [got for got in found if isinstance(got, OneoffError)]
    rows = [
        row
        for got in found
        if not isinstance(got, OneoffError)
        for row in trail.since_filter(got, since)
    ]
    rows.sort(key=lambda r: str(r.get("start") or ""))
    # any host that could not be read is "could not run", whatever its error's own status
    status = ExitStatus.CANNOT_RUN if errors else ExitStatus.OK
    return Listing(rows, [str(e) for e in errors], status)


def _read_trail(pool: Connections, settings: HostSettings) -> list[dict[str, Any]] | OneoffError:
    from oneoff.client import journal as trail
    from oneoff.client.session import collect

    try:
        script = trail.audit_read_script(settings.state_dir)
        data = collect(pool.get(settings.name), script, settings.connect_timeout + 20)
        return trail.runs(trail.parse_records(data, settings.name))
    except OneoffError as exc:
        return exc
