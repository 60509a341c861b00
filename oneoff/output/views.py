"""What oneoff shows people, as text: tables, the summary of a run, the dry-run plan.

Pure functions from values (results, JSON-shaped records) to text; the reporters and
the CLI write it. The records are the ones ``--json`` prints, so the table and the JSON
of a listing cannot disagree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from oneoff.durations import format_duration
from oneoff.outcome import record_outcome

if TYPE_CHECKING:
    from oneoff.outcome import HostResult
    from oneoff.output.terminal import Terminal
    from oneoff.plan.probe import ResolvedRelease
    from oneoff.values import RunSpec

Record = Mapping[str, Any]


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, no trailing blanks."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def json_lines(records: Sequence[Record]) -> str:
    return "".join(json.dumps(dict(r), sort_keys=True) + "\n" for r in records)


def show_listing(
    terminal: Terminal,
    records: Sequence[Record],
    render: Callable[[Sequence[Record]], str],
    *,
    as_json: bool,
) -> None:
    """A listing on stdout: one JSON object per row, or the table *render* makes."""
    body = json_lines(records) if as_json else render(records) + "\n"
    terminal.write("stdout", body.encode())


# -- a run ------------------------------------------------------------------------------


def summary_table(results: Sequence[HostResult]) -> str:
    """Host, release, outcome, duration: one aligned row per host."""
    rows = [("HOST", "RELEASE", "RESULT", "DURATION")]
    for r in results:
        rows.append((r.host, r.release_id or "-", r.describe(), format_duration(r.duration)))
    return table(rows)


def count_line(results: Sequence[HostResult], counts: Mapping[str, int]) -> str:
    """``3 hosts: 2 ok, 1 failed`` (only the counts that are not zero)."""
    said = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n)
    return f"{len(results)} hosts: {said}"


def plans(results: Sequence[HostResult]) -> str:
    """The ``--dry-run`` plan of every host that got one (see docs/cli.md#dry-run)."""
    return "".join("\n".join(plan_lines(r)) + "\n" for r in results if r.plan is not None)


def plan_lines(result: HostResult) -> list[str]:
    plan = result.plan or {}
    revision = f" revision {result.revision}" if result.revision else ""
    lines = [
        f"{result.host}:",
        f"  release:     {result.release_id} ({plan.get('cwd')}){revision}",
        f"  interpreter: {plan.get('path_head')}/python",
        f"  cwd:         {plan.get('cwd')}",
    ]
    lines += [f"  env file:    {f['path']} ({f['keys']} keys)" for f in plan.get("env_files", [])]
    extra = plan.get("extra_env_keys") or []
    if extra:
        lines.append(f"  extra env:   {', '.join(k + '=***' for k in extra)}")
    if plan.get("task"):
        lines.append(f"  task:        {plan['task']} ({plan.get('task_source')})")
    lines.append(f"  command:     {result.display}")
    return lines + _plan_limits(plan)


def _plan_limits(plan: Mapping[str, Any]) -> list[str]:
    lines = []
    if plan.get("lock"):
        lines.append(f"  lock:        {plan['lock']}")
    if plan.get("timeout"):
        lines.append(f"  timeout:     {plan['timeout']:g}s")
    if plan.get("tty"):
        lines.append("  terminal:    yes (PTY)")
    return lines


def detached_ids(results: Sequence[HostResult]) -> str:
    """The run id alone for one host (``id=$(oneoff ... --detach ...)`` works), else
    ``host<TAB>id`` per line; empty when nothing was started."""
    lines = [
        str(r.run_id) if len(results) == 1 else f"{r.host}\t{r.run_id}"
        for r in results
        if r.detached
    ]
    return "".join(line + "\n" for line in lines)


def describe_start(host: str, release: ResolvedRelease, spec: RunSpec) -> str:
    """What -v says before a run: where, which release, which interpreter, what command."""
    revision = f" ({release.revision[:12]})" if release.revision else ""
    extras = [f"lock {spec.lock}"] if spec.lock else []
    if spec.timeout:
        extras.append(f"timeout {format_duration(spec.timeout)}")
    tail = f" [{', '.join(extras)}]" if extras else ""
    return (
        f"{host}: release {release.release_id}{revision} at {release.path}, "
        f"{release.python}; run {spec.run_id}: {spec.display}{tail}"
    )


# -- listings: the records of `oneoff releases|tasks|hosts|audit|ps --json` -------------


def releases_table(records: Sequence[Record]) -> str:
    """One row per host; a host not on the reference release is marked ``*``."""
    header: tuple[str, ...] = ("HOST", "RELEASE", "REVISION", "DEPLOYED", "PYTHON", "PATH")
    rows = [header, *(_release_row(r) for r in records)]
    text = table(rows)
    if any(r.get("drift") for r in records):
        common = next(r["release"] for r in records if "error" not in r and not r.get("drift"))
        on_common = sum(1 for r in records if r.get("release") == common)
        text += f"\n* not on {common} (run by {on_common} of {len(records)} hosts)"
    return text


def _release_row(r: Record) -> tuple[str, ...]:
    if "error" in r:
        return (str(r["host"]), "-", "error: " + str(r["error"]), "", "", "")
    deployed = r.get("deployed_at")
    return (
        str(r["host"]),
        str(r["release"]) + (" *" if r.get("drift") else ""),
        str(r.get("revision") or "-")[:12],
        time.strftime("%Y-%m-%d %H:%M", time.localtime(deployed)) if deployed else "?",
        str(r.get("python") or "?"),
        str(r.get("path")),
    )


def tasks_table(records: Sequence[Record]) -> str:
    rows = [("HOST", "TASK", "COMMAND", "FROM", "DESCRIPTION")]
    for r in records:
        over = list(r.get("overrides") or [])
        source = str(r.get("source")) + (f" (over {', '.join(over)})" if over else "")
        rows.append(
            (str(r["host"]), str(r["task"]), str(r["command"]), source, r.get("description") or "")
        )
    return table(rows)


def hosts_table(records: Sequence[Record]) -> str:
    rows = [("HOST", "ADDRESS", "GROUPS", "ROLES", "PRIMARY")]
    for r in records:
        rows.append(
            (
                str(r["host"]),
                str(r["address"]),
                ",".join(r.get("groups") or []) or "-",
                ",".join(r.get("roles") or []) or "-",
                "yes" if r.get("primary") else "",
            )
        )
    return table(rows)


def audit_table(records: Sequence[Record]) -> str:
    rows = [("STARTED", "HOST", "RUN", "OPERATOR", "RELEASE", "RESULT", "COMMAND")]
    for r in records:
        operator = r.get("operator") or {}
        who = "@".join(filter(None, [operator.get("user"), operator.get("machine")]))
        rows.append(
            (
                str(r.get("start") or "?"),
                str(r.get("host")),
                str(r.get("run_id")),
                who or "?",
                str(r.get("release_id") or "-"),
                record_outcome(r),
                str(r.get("command") or ""),
            )
        )
    return table(rows)


def ps_table(records: Sequence[Record]) -> str:
    rows = [("RUN", "HOST", "STATE", "STARTED", "DURATION", "RESULT", "COMMAND")]
    for r in records:
        duration = r.get("duration")
        rows.append(
            (
                str(r.get("run_id")),
                str(r.get("host")),
                str(r.get("state")),
                str(r.get("start") or "?"),
                format_duration(float(duration)) if duration is not None else "-",
                record_outcome(r) if r.get("state") == "ended" else "-",
                str(r.get("command") or ""),
            )
        )
    return table(rows)
