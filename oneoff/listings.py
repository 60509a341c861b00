"""``oneoff releases``, ``oneoff tasks`` and ``oneoff hosts``: what is deployed, runnable, where."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from oneoff.errors import OneoffError, UsageError

if TYPE_CHECKING:
    from oneoff.inventory import Inventory, Overrides
    from oneoff.output import Terminal


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def run(name: str, inventory: Inventory, opts: dict[str, Any], overrides: Overrides, terminal: Terminal) -> int:
    if name == "hosts":
        return hosts(inventory, opts, terminal)
    if not opts["targets"]:
        raise UsageError(f"`oneoff {name}` needs a target", hint=f"oneoff {name} -H HOST|GROUP")
    from oneoff import fleet
    from oneoff.plan import Invocation

    targets = inventory.select(opts["targets"])
    policy = fleet.Policy(parallel=opts["parallel"], accept_new_host_keys=bool(opts.get("accept_new_host_keys")))
    invocation = Invocation(kind="task", words=("-",), release_id=opts.get("release_id"))
    found = fleet.probe_hosts(targets, lambda h: inventory.settings(h, overrides), invocation, policy)
    if name == "releases":
        return releases(found, opts, terminal)
    return tasks(found, inventory, opts, terminal)


def releases(found: dict[str, Any], opts: dict[str, Any], terminal: Terminal) -> int:
    ids = [r.release_id for r in found.values() if not isinstance(r, OneoffError)]
    common = max(set(ids), key=ids.count) if ids else None
    records = []
    for host, r in found.items():
        if isinstance(r, OneoffError):
            records.append({"host": host, "error": str(r.message), "hint": r.hint})
            continue
        records.append(
            {
                "host": host,
                "release": r.release_id,
                "revision": r.revision,
                "deployed_at": r.deployed_at,
                "path": r.path,
                "python": r.python_version,
                "drift": r.release_id != common,
            }
        )
    if opts["as_json"]:
        for record in records:
            terminal.write("stdout", (json.dumps(record, sort_keys=True) + "\n").encode())
    else:
        rows = [("HOST", "RELEASE", "REVISION", "DEPLOYED", "PYTHON", "PATH")]
        for rec in records:
            if "error" in rec:
                rows.append((rec["host"], "error", rec["error"], "", "", ""))
                continue
            deployed = time.strftime("%Y-%m-%d %H:%M", time.localtime(rec["deployed_at"])) if rec["deployed_at"] else "?"
            mark = " *" if rec["drift"] else ""
            rows.append((rec["host"], rec["release"] + mark, (rec["revision"] or "-")[:12], deployed,
                         rec["python"] or "?", rec["path"]))
        out = table(rows)
        if any(rec.get("drift") for rec in records):
            out += f"\n* not on {common}, the release most hosts run"
        terminal.write("stdout", (out + "\n").encode())
    failed = any("error" in rec for rec in records)
    return 255 if failed else 0


def tasks(found: dict[str, Any], inventory: Inventory, opts: dict[str, Any], terminal: Terminal) -> int:
    from oneoff.tasks import release_tasks

    status = 0
    records = []
    for host, r in found.items():
        if isinstance(r, OneoffError):
            terminal.message(str(r))
            status = 255
            continue
        sources = release_tasks(r)
        for problem in sources.problems:
            terminal.message(f"{host}: {problem} (other tasks still work)")
        merged = {**sources.presets, **inventory.tasks, **sources.shipped}
        for task in merged.values():
            shadowed = [t.source for t in (sources.presets.get(task.name), inventory.tasks.get(task.name))
                        if t is not None and t is not task]
            records.append({"host": host, "task": task.name, "command": " ".join(task.command),
                            "source": task.source, "run": task.run, "lock": task.lock,
                            "description": task.description, "overrides": shadowed})
    if opts["as_json"]:
        for record in records:
            terminal.write("stdout", (json.dumps(record, sort_keys=True) + "\n").encode())
        return status
    rows = [("HOST", "TASK", "COMMAND", "FROM", "DESCRIPTION")]
    for rec in records:
        source = rec["source"] + (f" (over {', '.join(rec['overrides'])})" if rec["overrides"] else "")
        rows.append((rec["host"], rec["task"], rec["command"], source, rec["description"] or ""))
    terminal.write("stdout", (table(rows) + "\n").encode())
    return status


def hosts(inventory: Inventory, opts: dict[str, Any], terminal: Terminal) -> int:
    names = inventory.select(opts["targets"]) if opts["targets"] else list(inventory.hosts)
    rows = [("HOST", "ADDRESS", "GROUPS", "ROLES", "PRIMARY")]
    records = []
    for name in names:
        s = inventory.settings(name)
        address = "local" if s.transport == "local" else f"{s.user + '@' if s.user else ''}{s.hostname}" + (
            f":{s.port}" if s.port else "")
        groups = inventory.groups_of(name)
        records.append({"host": name, "address": address, "groups": groups, "roles": list(s.roles),
                        "primary": s.primary, "app_root": s.app_root})
        rows.append((name, address, ",".join(groups) or "-", ",".join(s.roles) or "-", "yes" if s.primary else ""))
    if opts["as_json"]:
        for record in records:
            terminal.write("stdout", (json.dumps(record, sort_keys=True) + "\n").encode())
    else:
        terminal.write("stdout", (table(rows) + "\n").encode())
    return 0
