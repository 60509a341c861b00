"""What a host says about its detached runs, parsed: the status frames of ``ps``/``logs``/``kill``.

The scripts (:func:`oneoff.scripts.ps_script` and co.) send each ``<id>.json`` status
file as the agent wrote it, framed as ``status=ID ALIVE SIZE``, SIZE bytes, a newline.
ALIVE is the host's verdict on the PID the file names (it runs, and the kernel started
it when the file says). Everything else is JSON, read here, so its spacing, layout
and key order do not matter.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

_HEADER = re.compile(rb"status=(?P<id>[^\n]*) (?P<alive>[01]) (?P<size>\d+)\n")


class StatusFrame(NamedTuple):
    """One status file as the host sent it."""

    run_id: str
    alive: bool
    document: bytes


def status_frames(data: bytes) -> list[StatusFrame]:
    """Every whole frame in *data*, in order; other lines (``signalled``) are skipped,
    and a frame cut short (the connection died) ends the list."""
    frames: list[StatusFrame] = []
    pos = 0
    while pos < len(data):
        header = _HEADER.match(data, pos)
        if header is None:
            end = data.find(b"\n", pos)
            if end < 0:
                break
            pos = end + 1
            continue
        start = header.end()
        stop = start + int(header["size"])
        if len(data) < stop:
            break
        frames.append(
            StatusFrame(
                header["id"].decode("utf-8", "replace"), header["alive"] == b"1", data[start:stop]
            )
        )
        pos = stop + 1 if data[stop : stop + 1] == b"\n" else stop
    return frames


def run_record(frame: StatusFrame) -> dict[str, Any] | None:
    """The status as a dict, ``state`` ``lost`` when it says running but its process is
    gone (a reboot, a kill -9); None when the document is not a JSON object."""
    try:
        record = json.loads(frame.document)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    record.setdefault("run_id", frame.run_id)
    if record.get("state") == "running" and not frame.alive:
        record["state"] = "lost"
    return record


def run_records(data: bytes) -> list[dict[str, Any]]:
    """Every valid status in *data*, in the order the host sent them."""
    return [record for frame in status_frames(data) if (record := run_record(frame)) is not None]
