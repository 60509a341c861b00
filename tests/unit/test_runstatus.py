"""The detached runs' status frames, parsed on the client: spacing and layout do not matter."""

from __future__ import annotations

import json

import pytest

from oneoff.plan.runstatus import StatusFrame, run_record, run_records, status_frames

RECORD = {
    "run_id": "r1",
    "pid": 4242,
    "starttime": "981234",
    "state": "running",
    "start": "2026-01-01T00:00:00Z",
    "command": 'echo "state": "ended"',
}


def frame(run_id: str, alive: bool, document: bytes) -> bytes:
    return b"status=%s %d %d\n%s\n" % (run_id.encode(), alive, len(document), document)


LAYOUTS = {
    "agent": json.dumps(RECORD, sort_keys=True),
    "compact": json.dumps(RECORD, separators=(",", ":")),
    "spaced": json.dumps(RECORD, separators=(" , ", " : ")),
    "indented": json.dumps(RECORD, indent=2),
    "tabs-crlf": json.dumps(RECORD, indent="\t").replace("\n", "\r\n"),
    "reversed": json.dumps(dict(reversed(RECORD.items())), indent=4),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_running_status_reads_the_same_in_every_layout(layout: str) -> None:
    data = frame("r1", True, LAYOUTS[layout].encode())
    assert run_records(data) == [RECORD]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_running_without_its_process_is_lost_in_every_layout(layout: str) -> None:
    [record] = run_records(frame("r1", False, LAYOUTS[layout].encode()))
    assert record["state"] == "lost"


def test_an_ended_run_stays_ended_whatever_its_pid_does() -> None:
    ended = json.dumps({**RECORD, "state": "ended", "status": 3}).encode()
    assert run_records(frame("r1", False, ended))[0]["state"] == "ended"
    assert run_records(frame("r1", True, ended))[0]["state"] == "ended"


def test_frames_are_read_by_size_not_by_line() -> None:
    odd = b'{"state": "ended",\n"note": "status=x 1 99"}'
    data = b"signalled\n" + frame("a b", True, odd) + frame("r2", False, b"{}")
    assert status_frames(data) == [
        StatusFrame("a b", True, odd),
        StatusFrame("r2", False, b"{}"),
    ]


def test_a_frame_cut_short_ends_the_list() -> None:
    whole = frame("r1", True, b'{"state": "ended"}')
    assert status_frames(whole + b'status=r2 1 50\n{"sta') == status_frames(whole)
    assert len(status_frames(whole)) == 1


def test_a_document_that_is_not_a_json_object_is_skipped() -> None:
    data = frame("bad", True, b"{not json") + frame("list", True, b"[1]") + frame("ok", True, b"{}")
    assert run_records(data) == [{"run_id": "ok"}]
    assert run_record(StatusFrame("x", True, b"null")) is None


def test_the_frame_names_the_run_when_the_document_does_not() -> None:
    assert run_records(frame("r9", False, b'{"state": "ended"}')) == [
        {"state": "ended", "run_id": "r9"}
    ]
