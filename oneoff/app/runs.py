"""Detached runs seen from here: ``oneoff ps``, ``oneoff logs [-f]`` and ``oneoff kill``.

The agent that runs a ``--detach`` command keeps ``state_dir/runs/<id>.json`` (status)
and ``<id>.log`` (timestamped output). These commands read them with small POSIX sh
scripts, so they work without a release or its Python. A run whose status says
running but whose process is gone (a reboot, a kill -9) is shown as *lost*: the
status file records the PID and its kernel start time, and both must still match.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from oneoff.errors import UsageError
from oneoff.scripts import quote

if TYPE_CHECKING:
    from oneoff.config.model import HostSettings, Inventory, Overrides
    from oneoff.output.reporters import Terminal
    from oneoff.transport.base import RemoteProcess, Transport

RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]*")
_TIMESTAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [oe] ")

# Prints "alive=0|1 <status json>" per run; alive means the PID runs with the same start time.
_ALIVE = r"""
alive() {
  pid=$(sed -n 's/.*"pid": \([0-9]*\).*/\1/p' "$1")
  st=$(sed -n 's/.*"starttime": "\([0-9]*\)".*/\1/p' "$1")
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  stat=$(sed 's/.*) //' "/proc/$pid/stat")
  case $stat in Z*|X*) return 1 ;; esac  # a zombie waiting to be reaped is not running
  [ "$(printf '%s' "$stat" | cut -d' ' -f20)" = "$st" ]
}
running() { grep -q '"state": "running"' "$1" && alive "$1"; }
"""


def check_run_id(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise UsageError(f"{run_id!r} is not a run id", hint="see `oneoff ps -H HOST`")
    return run_id


def ps_script(runs_dir: str) -> str:
    return (
        _ALIVE
        + f"d={quote(runs_dir)}\n"
        + """[ -d "$d" ] || exit 0
for f in "$d"/*.json; do
  [ -f "$f" ] || continue
  if alive "$f"; then a=1; else a=0; fi
  printf 'alive=%s ' "$a"; cat "$f"
done
"""
    )


def parse_ps(data: bytes, host: str) -> list[dict[str, Any]]:
    runs = []
    for line in data.decode("utf-8", "replace").splitlines():
        flag, _, text = line.partition(" ")
        try:
            record = json.loads(text)
        except ValueError:
            continue
        record["host"] = host
        if record.get("state") == "running" and flag != "alive=1":
            record["state"] = "lost"
        runs.append(record)
    return sorted(runs, key=lambda r: str(r.get("start") or ""), reverse=True)


def logs_script(runs_dir: str, run_id: str, follow: bool) -> str:
    """Stream the log; with *follow*, until the run ends. The status JSON ends on stderr."""
    head = _ALIVE + f"d={quote(runs_dir)}\nid={quote(check_run_id(run_id))}\n"
    body = """js=$d/$id.json; log=$d/$id.log
if [ ! -f "$js" ]; then
  echo "unknown" >&2
  ls -t "$d" 2>/dev/null | sed -n 's/\\.json$//p' | head -n 10 >&2
  exit 3
fi
"""
    if follow:
        body += """off=0
while :; do
  if running "$js"; then more=1; else more=0; fi
  size=$(wc -c < "$log" 2>/dev/null | tr -d ' '); size=${size:-0}
  if [ "$size" -gt "$off" ]; then
    tail -c +$((off + 1)) "$log" | head -c $((size - off)); off=$size
  fi
  [ "$more" = 1 ] || break
  sleep 0.3
done
"""
    else:
        body += '[ -f "$log" ] && cat "$log"\n'
    body += """if running "$js"; then printf "alive=1 " >&2; else printf "alive=0 " >&2; fi
cat "$js" >&2
"""
    return head + body


def kill_script(runs_dir: str, run_id: str, wait: float) -> str:
    """SIGTERM to the run's supervisor (which stops its process group, SIGKILL after
    kill_after), then wait for the status file to say it ended."""
    head = _ALIVE + f"d={quote(runs_dir)}\nid={quote(check_run_id(run_id))}\n"
    return (
        head
        + f"limit={int(wait * 5) + 1}\n"
        + """js=$d/$id.json
if [ ! -f "$js" ]; then
  echo "unknown" >&2
  ls -t "$d" 2>/dev/null | sed -n 's/\\.json$//p' | head -n 10 >&2
  exit 3
fi
if running "$js"; then
  kill -TERM "$pid" 2>/dev/null
  i=0
  while running "$js" && [ "$i" -lt "$limit" ]; do sleep 0.2; i=$((i + 1)); done
  echo "signalled"
fi
if running "$js"; then printf "alive=1 "; else printf "alive=0 "; fi
cat "$js"
"""
    )


def strip_timestamps(data: bytes) -> bytes:
    """`<time> <o|e> line` -> `line`, for whole lines."""
    return b"".join(_TIMESTAMP.sub(b"", line) for line in data.splitlines(keepends=True))


def run_exit_code(record: dict[str, Any]) -> int:
    """The run's status as oneoff would have exited with it had it not been detached."""
    if record.get("state") == "lost":
        return 255
    if record.get("timed_out"):
        return 124
    if record.get("signal_number"):
        return 128 + int(record["signal_number"])
    status = record.get("status")
    return int(status) if status is not None else 255


def describe(record: dict[str, Any]) -> str:
    state = record.get("state")
    if state != "ended":
        return str(state)
    if record.get("timed_out"):
        return "timed out"
    if record.get("signal"):
        return f"killed by {record['signal']}"
    return f"exit {record.get('status')}"


def read_all(process: RemoteProcess, timeout: float) -> tuple[bytes, bytes]:
    """Both streams of a short script, to EOF."""
    out: list[bytes] = []
    while chunk := process.recv(1 << 16, timeout):
        out.append(chunk)
    err: list[bytes] = []
    while chunk := process.recv_stderr(1 << 16, timeout):
        err.append(chunk)
    return b"".join(out), b"".join(err)


def command(
    name: str,
    inventory: Inventory,
    opts: dict[str, Any],
    overrides: Overrides,
    terminal: Terminal,
    args: tuple[str, ...],
) -> int:
    """``ps -H TARGET`` | ``logs -H HOST ID [-f]`` | ``kill -H HOST ID``."""
    if not opts["targets"]:
        raise UsageError(f"`oneoff {name}` needs a target", hint=f"oneoff {name} -H HOST")
    hosts = inventory.select(opts["targets"])
    if name == "ps":
        if args:
            raise UsageError(f"unexpected argument {args[0]!r} after 'ps'")
        return _ps(hosts, inventory, opts, overrides, terminal)
    if len(args) != 1:
        raise UsageError(f"`oneoff {name}` takes one run id", hint=f"oneoff {name} -H HOST RUN_ID")
    if len(hosts) != 1:
        raise UsageError(f"`oneoff {name}` works on one host; the target has {len(hosts)}")
    run_id = check_run_id(args[0])
    settings = inventory.settings(hosts[0], overrides)
    try:
        if name == "logs":
            return _logs(settings, run_id, opts, terminal)
        return _kill(settings, run_id, opts, terminal)
    except TimeoutError:
        from oneoff.errors import ConnectionLost

        raise ConnectionLost("no answer from the host", host=settings.name) from None


def _transport(settings: HostSettings, opts: dict[str, Any]) -> Transport:
    from oneoff.client import fleet

    policy = fleet.Policy(accept_new_host_keys=bool(opts.get("accept_new_host_keys")))
    transport = fleet.make_transport(settings, policy)
    transport.connect()
    return transport


def _runs_dir(settings: HostSettings) -> str:
    return settings.state_dir.rstrip("/") + "/runs"


def _ps(
    hosts: list[str],
    inventory: Inventory,
    opts: dict[str, Any],
    overrides: Overrides,
    terminal: Terminal,
) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from oneoff.app.listings import table
    from oneoff.client.session import collect
    from oneoff.durations import format_duration
    from oneoff.errors import OneoffError

    def one(host: str) -> list[dict[str, Any]] | OneoffError:
        s = inventory.settings(host, overrides)
        from oneoff.client import fleet

        transport = fleet.make_transport(s, fleet.Policy())
        try:
            return parse_ps(
                collect(transport, ps_script(_runs_dir(s)), s.connect_timeout + 20), host
            )
        except OneoffError as exc:
            return exc
        finally:
            transport.close()

    with ThreadPoolExecutor(max_workers=min(32, len(hosts))) as pool:
        found = list(pool.map(one, hosts))
    status = 0
    records: list[dict[str, Any]] = []
    for got in found:
        if isinstance(got, OneoffError):
            terminal.message(str(got))
            status = 255
        else:
            records.extend(got)
    if opts["as_json"]:
        body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        terminal.write("stdout", body.encode())
        return status
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
                describe(r) if r.get("state") == "ended" else "-",
                str(r.get("command") or ""),
            )
        )
    terminal.write("stdout", (table(rows) + "\n").encode())
    return status


def _unknown(run_id: str, err: bytes, host: str) -> UsageError:
    recent = [line for line in err.decode("utf-8", "replace").splitlines()[1:] if line]
    return UsageError(
        f"no run {run_id!r} on {host}",
        hint="recent runs: " + (", ".join(recent) if recent else "none") + " (oneoff ps)",
    )


def _status_from(err: bytes) -> dict[str, Any]:
    text = err.decode("utf-8", "replace").strip().splitlines()
    flag, _, payload = (text[-1] if text else "").partition(" ")
    try:
        record: dict[str, Any] = json.loads(payload)
    except ValueError:
        return {"state": "lost"}
    if record.get("state") == "running" and flag != "alive=1":
        record["state"] = "lost"
    return record


def _logs(settings: HostSettings, run_id: str, opts: dict[str, Any], terminal: Terminal) -> int:
    from oneoff.client.session import TICK

    transport = _transport(settings, opts)
    try:
        process = transport.start(logs_script(_runs_dir(settings), run_id, opts["follow"]))
        pending = b""
        while True:
            try:
                chunk = process.recv(1 << 16, TICK if opts["follow"] else 30.0)
            except TimeoutError:
                if opts["follow"]:
                    continue
                raise
            if not chunk:
                break
            if opts["timestamps"]:
                terminal.write("stdout", chunk)
                continue
            whole, _, pending = (pending + chunk).rpartition(b"\n")
            if whole:
                terminal.write("stdout", strip_timestamps(whole + b"\n"))
        if pending:
            terminal.write("stdout", strip_timestamps(pending))
        err = b""
        while part := process.recv_stderr(1 << 16, 30.0):
            err += part
        if process.exit_status() == 3:
            raise _unknown(run_id, err, settings.name)
    finally:
        transport.close()
    record = _status_from(err)
    if not opts["follow"]:
        return 0
    if record.get("state") == "lost":
        terminal.message(f"{settings.name}: run {run_id} was lost (its process is gone)")
    return run_exit_code(record)


def _kill(settings: HostSettings, run_id: str, opts: dict[str, Any], terminal: Terminal) -> int:
    transport = _transport(settings, opts)
    try:
        process = transport.start(kill_script(_runs_dir(settings), run_id, settings.kill_after + 5))
        out, err = read_all(process, settings.kill_after + 30)
        if process.exit_status() == 3:
            raise _unknown(run_id, err, settings.name)
    finally:
        transport.close()
    lines = out.decode("utf-8", "replace").strip().splitlines()
    signalled = bool(lines) and lines[0] == "signalled"
    record = _status_from(b"\n".join(x.encode() for x in lines[-1:]))
    state = record.get("state")
    if not signalled:
        terminal.message(
            f"{settings.name}: run {run_id} had already {_past(record)}; nothing to do"
        )
        return 0
    if state == "ended":
        terminal.message(f"{settings.name}: run {run_id} stopped ({describe(record)})")
        return 0
    terminal.message(f"{settings.name}: run {run_id} is still {state} after SIGTERM and SIGKILL")
    return 1


def _past(record: dict[str, Any]) -> str:
    if record.get("state") == "lost":
        return "been lost (its process is gone)"
    return f"ended ({describe(record)})"
