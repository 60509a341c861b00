"""Detached runs seen from here: ``oneoff ps``, ``oneoff logs [-f]`` and ``oneoff kill``.

The agent that runs a ``--detach`` command keeps ``state_dir/runs/<id>.json`` (status)
and ``<id>.log`` (timestamped output). These commands read them with small POSIX sh
scripts, so they work without a release or its Python. A run whose status says
running but whose process is gone (a reboot, a kill -9) is shown as *lost*: the
status file records the PID and its kernel start time, and both must still match.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oneoff.app.inventory import DEFAULT_ACCESS, Access, open_inventory
from oneoff.app.listings import Listing
from oneoff.errors import ExitStatus, OneoffError, UsageError
from oneoff.names import is_run_id
from oneoff.outcome import record_exit, record_outcome
from oneoff.plan.runstatus import run_records
from oneoff.scripts import kill_script, logs_script, ps_script

if TYPE_CHECKING:
    from oneoff.app.inventory import InventorySource
    from oneoff.client.connections import Connections
    from oneoff.config.model import HostSettings
    from oneoff.output.terminal import Terminal
    from oneoff.transport.base import RemoteProcess, Transport

_TIMESTAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [oe] ")
_UNKNOWN_RUN = 3  # what logs_script and kill_script exit with for a run id they do not know


def check_run_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise UsageError(f"{run_id!r} is not a run id", hint="see `oneoff ps -H HOST`")
    return run_id


def parse_ps(data: bytes, host: str) -> list[dict[str, Any]]:
    """The runs ``ps_script`` reported on *host*, newest first."""
    runs = run_records(data)
    for record in runs:
        record["host"] = host
    return sorted(runs, key=lambda r: str(r.get("start") or ""), reverse=True)


def strip_timestamps(data: bytes) -> bytes:
    """`<time> <o|e> line` -> `line`, for whole lines."""
    return b"".join(_TIMESTAMP.sub(b"", line) for line in data.splitlines(keepends=True))


def read_all(process: RemoteProcess, timeout: float) -> tuple[bytes, bytes]:
    """Both streams of a short script, to EOF."""
    out: list[bytes] = []
    while chunk := process.recv(1 << 16, timeout):
        out.append(chunk)
    err: list[bytes] = []
    while chunk := process.recv_stderr(1 << 16, timeout):
        err.append(chunk)
    return b"".join(out), b"".join(err)


def _connected(settings: HostSettings, access: Access) -> Transport:
    from oneoff.client.connections import make_transport

    transport = make_transport(settings, accept_new_host_keys=access.accept_new_host_keys)
    try:
        transport.connect()
    except BaseException:
        transport.close()
        raise
    return transport


def _runs_dir(settings: HostSettings) -> str:
    return settings.state_dir.rstrip("/") + "/runs"


def _one_host(
    inventory: InventorySource, target: Sequence[str], name: str, access: Access
) -> HostSettings:
    inv = open_inventory(inventory)
    hosts = inv.select(target)
    if len(hosts) != 1:
        raise UsageError(f"`oneoff {name}` works on one host; the target has {len(hosts)}")
    return access.settings(inv, hosts[0])


def _no_answer(host: str) -> OneoffError:
    from oneoff.errors import ConnectionLost

    return ConnectionLost("no answer from the host", host=host)


# -- ps -----------------------------------------------------------------------------------


def ps(
    inventory: InventorySource, targets: Sequence[str], *, access: Access = DEFAULT_ACCESS
) -> Listing:
    """Every detached run on the target's hosts, newest first per host."""
    inv = open_inventory(inventory)
    hosts = inv.select(targets)
    found = access.each_host(inv, hosts, _ps_one)
    errors = [str(got) for got in found if isinstance(got, OneoffError)]
    records = [r for got in found if not isinstance(got, OneoffError) for r in got]
    return Listing(records, errors, ExitStatus.CANNOT_RUN if errors else ExitStatus.OK)


def _ps_one(pool: Connections, settings: HostSettings) -> list[dict[str, Any]] | OneoffError:
    from oneoff.client.session import collect

    try:
        script = ps_script(_runs_dir(settings))
        return parse_ps(
            collect(pool.get(settings.name), script, settings.connect_timeout + 20), settings.name
        )
    except OneoffError as exc:
        return exc


# -- logs -----------------------------------------------------------------------------------


def _unknown(run_id: str, err: bytes, host: str) -> UsageError:
    recent = [line for line in err.decode("utf-8", "replace").splitlines()[1:] if line]
    return UsageError(
        f"no run {run_id!r} on {host}",
        hint="recent runs: " + (", ".join(recent) if recent else "none") + " (oneoff ps)",
    )


def _status_from(data: bytes) -> dict[str, Any]:
    """The run's status from a logs/kill script's status frame (lost when there is none)."""
    records = run_records(data)
    return records[-1] if records else {"state": "lost"}


def logs(
    inventory: InventorySource,
    target: Sequence[str],
    run_id: str,
    out: Terminal,
    *,
    follow: bool = False,
    timestamps: bool = False,
    access: Access = DEFAULT_ACCESS,
) -> int:
    """A detached run's output on *out*; with *follow*, until the run ends, and then
    its status as oneoff would have exited with it (0 without *follow*)."""
    check_run_id(run_id)
    settings = _one_host(inventory, target, "logs", access)
    try:
        err = _stream_log(
            settings, run_id, out, follow=follow, timestamps=timestamps, access=access
        )
    except TimeoutError:
        raise _no_answer(settings.name) from None
    if not follow:
        return ExitStatus.OK
    record = _status_from(err)
    if record.get("state") == "lost":
        out.message(f"{settings.name}: run {run_id} was lost (its process is gone)")
    return record_exit(record)


def _stream_log(
    settings: HostSettings,
    run_id: str,
    out: Terminal,
    *,
    follow: bool,
    timestamps: bool,
    access: Access,
) -> bytes:
    """Copy the log to *out* as it comes; return the script's stderr (the status frame)."""
    from oneoff.client.session import TICK

    transport = _connected(settings, access)
    try:
        process = transport.start(logs_script(_runs_dir(settings), run_id, follow))
        pending = b""
        while chunk := _next_chunk(process, follow, TICK):
            if timestamps:
                out.write("stdout", chunk)
                continue
            whole, _, pending = (pending + chunk).rpartition(b"\n")
            if whole:
                out.write("stdout", strip_timestamps(whole + b"\n"))
        if pending:
            out.write("stdout", strip_timestamps(pending))
        err = b""
        while part := process.recv_stderr(1 << 16, 30.0):
            err += part
        if process.exit_status() == _UNKNOWN_RUN:
            raise _unknown(run_id, err, settings.name)
        return err
    finally:
        transport.close()


def _next_chunk(process: RemoteProcess, follow: bool, tick: float) -> bytes:
    """The next piece of the log; b"" at its end. Following, silence is only waiting."""
    while True:
        try:
            return process.recv(1 << 16, tick if follow else 30.0)
        except TimeoutError:
            if not follow:
                raise


# -- kill -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Killed:
    """What ``kill`` did, in one line for people, and the status to exit with."""

    message: str
    status: int


def kill(
    inventory: InventorySource,
    target: Sequence[str],
    run_id: str,
    *,
    access: Access = DEFAULT_ACCESS,
) -> Killed:
    """SIGTERM to a detached run (SIGKILL after its kill_after), waiting for it to end."""
    check_run_id(run_id)
    settings = _one_host(inventory, target, "kill", access)
    try:
        out = _signal_run(settings, run_id, access)
    except TimeoutError:
        raise _no_answer(settings.name) from None
    lines = out.decode("utf-8", "replace").strip().splitlines()
    signalled = bool(lines) and lines[0] == "signalled"
    record = _status_from(out)
    state = record.get("state")
    where = f"{settings.name}: run {run_id}"
    if not signalled:
        return Killed(f"{where} had already {_past(record)}; nothing to do", ExitStatus.OK)
    if state == "ended":
        return Killed(f"{where} stopped ({record_outcome(record)})", ExitStatus.OK)
    return Killed(f"{where} is still {state} after SIGTERM and SIGKILL", ExitStatus.FAILED)


def _signal_run(settings: HostSettings, run_id: str, access: Access) -> bytes:
    transport = _connected(settings, access)
    try:
        process = transport.start(kill_script(_runs_dir(settings), run_id, settings.kill_after + 5))
        out, err = read_all(process, settings.kill_after + 30)
        if process.exit_status() == _UNKNOWN_RUN:
            raise _unknown(run_id, err, settings.name)
        return out
    finally:
        transport.close()


def _past(record: dict[str, Any]) -> str:
    if record.get("state") == "lost":
        return "been lost (its process is gone)"
    return f"ended ({record_outcome(record)})"
