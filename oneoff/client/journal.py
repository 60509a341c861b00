"""The audit trail: read the hosts' ``audit.jsonl``, and keep a local copy of our own runs.

The agent writes the host's records (it is the one that knows the exit status even
when we are gone). Here we only read them back for ``oneoff audit``, and append
the same start/end records to ``$XDG_STATE_HOME/oneoff/audit.jsonl`` on this machine.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oneoff import scripts

if TYPE_CHECKING:
    from oneoff.outcome import HostResult
    from oneoff.plan.probe import ResolvedRelease
    from oneoff.values import RunSpec

TAIL_LINES = 5000


def local_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "oneoff"


def audit_read_script(state_dir: str, lines: int = TAIL_LINES) -> str:
    """POSIX sh that prints the last *lines* audit records (nothing if there are none)."""
    return scripts.audit_read_script(state_dir, lines)


def parse_records(data: bytes, host: str) -> list[dict[str, Any]]:
    """One dict per valid JSON line; a torn or foreign line is skipped, not fatal."""
    records = []
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            record.setdefault("host", host)
            records.append(record)
    return records


def runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold start/end pairs into one row per run id, oldest first (unfinished runs kept)."""
    by_id: dict[str, dict[str, Any]] = {}
    for record in records:
        run_id = str(record.get("run_id"))
        merged = by_id.setdefault(run_id, {})
        merged.update(record)
        if record.get("type") == "start":
            merged["start"] = record.get("start")
    for merged in by_id.values():
        merged["state"] = "ended" if "end" in merged else "unfinished"
        merged.pop("type", None)
    return sorted(by_id.values(), key=lambda r: str(r.get("start") or ""))


def since_filter(rows: list[dict[str, Any]], seconds: float | None) -> list[dict[str, Any]]:
    if seconds is None:
        return rows
    cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds))
    return [r for r in rows if str(r.get("start") or "") >= cutoff]


class LocalJournal:
    """Appends our own runs' start and end records on this machine; never fails a run."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or local_state_dir() / "audit.jsonl"

    def _append(self, record: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            line = (json.dumps(record, sort_keys=True) + "\n").encode()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError:
            pass  # a full or read-only home must not stop a migration; the host keeps the record

    def start(self, spec: RunSpec, release: ResolvedRelease) -> None:
        if spec.mode != "run":
            return
        self._append(
            {
                "type": "start",
                "run_id": spec.run_id,
                "host": spec.host,
                "release_id": release.release_id,
                "revision": release.revision,
                "command": spec.display,
                "task": spec.task,
                "lock": spec.lock,
                "operator": dict(spec.operator),
                "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )

    def end(self, result: HostResult) -> None:
        if result.run_id is None or result.plan is not None:
            return
        self._append(
            {
                "type": "end",
                "run_id": result.run_id,
                "host": result.host,
                "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "status": result.status,
                "signal": result.signal,
                "timed_out": result.timed_out,
                "error": str(result.error) if result.error else None,
                "duration": round(result.duration, 3),
            }
        )
