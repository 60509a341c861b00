"""``oneoff releases``, ``oneoff tasks`` and ``oneoff hosts``: what is deployed, runnable, where."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from oneoff.errors import OneoffError, UsageError
from oneoff.plan.probe import ResolvedRelease

if TYPE_CHECKING:
    from oneoff.config.model import Inventory, Overrides
    from oneoff.output.reporters import Terminal

Found = dict[str, ResolvedRelease | OneoffError]


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def _emit(
    terminal: Terminal, opts: dict[str, Any], records: list[dict[str, Any]], text: str
) -> None:
    if opts["as_json"]:
        body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    else:
        body = text + "\n"
    terminal.write("stdout", body.encode())


def run(
    name: str, inventory: Inventory, opts: dict[str, Any], overrides: Overrides, terminal: Terminal
) -> int:
    if name == "hosts":
        return hosts(inventory, opts, terminal)
    if name == "audit":
        return audit(inventory, opts, overrides, terminal)
    if not opts["targets"]:
        raise UsageError(f"`oneoff {name}` needs a target", hint=f"oneoff {name} -H HOST|GROUP")
    from oneoff.client import fleet
    from oneoff.plan.spec import Invocation

    targets = inventory.select(opts["targets"])
    policy = fleet.Policy(
        parallel=opts["parallel"], accept_new_host_keys=bool(opts.get("accept_new_host_keys"))
    )
    invocation = Invocation(kind="task", words=("-",), release_id=opts.get("release_id"))
    found = fleet.probe_hosts(
        targets, lambda h: inventory.settings(h, overrides), invocation, policy
    )
    if name == "releases":
        return releases(found, opts, terminal)
    return tasks(found, inventory, opts, terminal)


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


def _status(found: Found) -> int:
    """0, or the status of the hosts' errors (2 when every one is the user's mistake)."""
    errors = [r for r in found.values() if isinstance(r, OneoffError)]
    if not errors:
        return 0
    statuses = {e.exit_status for e in errors}
    return statuses.pop() if len(statuses) == 1 else 255


def releases(found: Found, opts: dict[str, Any], terminal: Terminal) -> int:
    common = majority_release(found)
    records: list[dict[str, Any]] = []
    rows = [("HOST", "RELEASE", "REVISION", "DEPLOYED", "PYTHON", "PATH")]
    for host, r in found.items():
        if isinstance(r, OneoffError):
            records.append({"host": host, "error": r.message, "hint": r.hint})
            rows.append((host, "-", "error: " + r.message, "", "", ""))
            continue
        drift = r.release_id != common
        records.append(
            {
                "host": host,
                "release": r.release_id,
                "revision": r.revision,
                "deployed_at": r.deployed_at,
                "path": r.path,
                "python": r.python_version,
                "drift": drift,
            }
        )
        deployed = (
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r.deployed_at)) if r.deployed_at else "?"
        )
        rows.append(
            (
                host,
                r.release_id + (" *" if drift else ""),
                (r.revision or "-")[:12],
                deployed,
                r.python_version or "?",
                r.path,
            )
        )
    text = table(rows)
    on_common = sum(1 for rec in records if rec.get("release") == common)
    if any(rec.get("drift") for rec in records):
        text += f"\n* not on {common} (run by {on_common} of {len(records)} hosts)"
    _emit(terminal, opts, records, text)
    return _status(found)


def tasks(found: Found, inventory: Inventory, opts: dict[str, Any], terminal: Terminal) -> int:
    """Every task of each host's release, sorted by name, with what each one overrides."""
    from oneoff.plan.tasks import definitions, release_tasks
    from oneoff.scripts import render

    records: list[dict[str, Any]] = []
    rows = [("HOST", "TASK", "COMMAND", "FROM", "DESCRIPTION")]
    for host, r in found.items():
        if isinstance(r, OneoffError):
            terminal.message(str(r))
            continue
        sources = release_tasks(r)
        for problem in sources.problems:
            terminal.message(f"{host}: {problem} (other tasks still work)")
        for name, (task, *shadowed) in definitions(inventory.tasks, sources).items():
            command = render(task.command)
            over = [t.source for t in shadowed]
            records.append(
                {
                    "host": host,
                    "task": name,
                    "command": command,
                    "source": task.source,
                    "overrides": over,
                    "run": task.run,
                    "lock": task.lock,
                    "timeout": task.timeout,
                    "tty": task.tty,
                    "description": task.description,
                }
            )
            source = task.source + (f" (over {', '.join(over)})" if over else "")
            rows.append((host, name, command, source, task.description or ""))
    _emit(terminal, opts, records, table(rows))
    return _status(found)


def hosts(inventory: Inventory, opts: dict[str, Any], terminal: Terminal) -> int:
    names = inventory.select(opts["targets"]) if opts["targets"] else list(inventory.hosts)
    rows = [("HOST", "ADDRESS", "GROUPS", "ROLES", "PRIMARY")]
    records: list[dict[str, Any]] = []
    for name in names:
        s = inventory.settings(name)
        if s.transport == "local":
            address = "local"
        else:
            address = (
                (f"{s.user}@" if s.user else "") + s.hostname + (f":{s.port}" if s.port else "")
            )
        groups = inventory.groups_of(name)
        records.append(
            {
                "host": name,
                "address": address,
                "groups": groups,
                "roles": list(s.roles),
                "primary": s.primary,
                "app_root": s.app_root,
            }
        )
        primary = "yes" if s.primary else ""
        rows.append((name, address, ",".join(groups) or "-", ",".join(s.roles) or "-", primary))
    _emit(terminal, opts, records, table(rows))
    return 0


def audit(
    inventory: Inventory, opts: dict[str, Any], overrides: Overrides, terminal: Terminal
) -> int:
    """Read each host's audit.jsonl: one row per run, oldest first."""
    if not opts["targets"]:
        raise UsageError("`oneoff audit` needs a target", hint="oneoff audit -H HOST|GROUP")
    from concurrent.futures import ThreadPoolExecutor

    from oneoff.client import fleet
    from oneoff.client import journal as trail
    from oneoff.client.session import collect

    targets = inventory.select(opts["targets"])
    policy = fleet.Policy(accept_new_host_keys=bool(opts.get("accept_new_host_keys")))

    def read(host: str) -> list[dict[str, Any]] | OneoffError:
        s = inventory.settings(host, overrides)
        transport = fleet.make_transport(s, policy)
        try:
            data = collect(transport, trail.audit_read_script(s.state_dir), s.connect_timeout + 20)
            return trail.runs(trail.parse_records(data, host))
        except OneoffError as exc:
            return exc
        finally:
            transport.close()

    with ThreadPoolExecutor(max_workers=min(opts["parallel"], len(targets))) as pool:
        found = dict(zip(targets, pool.map(read, targets), strict=True))
    status = 0
    rows: list[dict[str, Any]] = []
    for got in found.values():
        if isinstance(got, OneoffError):
            terminal.message(str(got))
            status = 255
            continue
        rows.extend(trail.since_filter(got, opts.get("since")))
    rows.sort(key=lambda r: str(r.get("start") or ""))
    table_rows = [("STARTED", "HOST", "RUN", "OPERATOR", "RELEASE", "RESULT", "COMMAND")]
    for r in rows:
        operator = r.get("operator") or {}
        who = "@".join(filter(None, [operator.get("user"), operator.get("machine")]))
        table_rows.append(
            (
                str(r.get("start") or "?"),
                str(r.get("host")),
                str(r.get("run_id")),
                who or "?",
                str(r.get("release_id") or "-"),
                trail.outcome(r),
                str(r.get("command") or ""),
            )
        )
    _emit(terminal, opts, rows, table(table_rows))
    return status
