"""state_dir on the host: the lock, the audit log, detached runs' status files and logs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oneoff.remote.fdio import CHUNK
from oneoff.remote.state import (
    Lock,
    RunsDir,
    StateDir,
    TimestampedLog,
    proc_starttime,
    run_is_over,
)

DAY = 86400.0
STAMP = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_state_dir_is_created_with_its_subdirectory(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path / "state"))
    assert state.ensure("locks") == str(tmp_path / "state" / "locks")
    assert (tmp_path / "state" / "locks").is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_state_dir_is_a_permission_error_up_front(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o500)
    with pytest.raises(PermissionError):
        StateDir(str(tmp_path / "state")).ensure()


def test_audit_appends_one_sorted_json_line_per_record(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    state.audit({"type": "start", "run_id": "r1"})
    state.audit({"type": "end", "run_id": "r1", "status": 0})
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert lines == [
        '{"run_id": "r1", "type": "start"}',
        '{"run_id": "r1", "status": 0, "type": "end"}',
    ]


def test_a_free_lock_is_acquired_and_records_its_holder(tmp_path: Path) -> None:
    lock = Lock(StateDir(str(tmp_path)), "migrate")
    try:
        assert lock.path == str(tmp_path / "locks" / "migrate.lock")
        assert lock.holder() == {}  # nobody has written yet
        assert lock.try_acquire()
        lock.record({"run_id": "r1", "pid": 42})
        assert lock.holder() == {"pid": 42, "run_id": "r1"}
    finally:
        lock.close()


def test_a_shorter_holder_record_replaces_a_longer_one_whole(tmp_path: Path) -> None:
    lock = Lock(StateDir(str(tmp_path)), "migrate")
    try:
        assert lock.try_acquire()
        lock.record({"run_id": "a-much-longer-run-id", "pid": 123456})
        lock.record({"run_id": "r2"})
        assert lock.holder() == {"run_id": "r2"}
    finally:
        lock.close()


def test_a_held_lock_is_busy_for_another_process_until_released(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    ours = Lock(state, "migrate")
    assert ours.try_acquire()
    ours.record({"run_id": "r1"})
    probe = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parents[2])!r})\n"
        "from oneoff.remote.state import Lock, StateDir\n"
        f"lock = Lock(StateDir({str(tmp_path)!r}), 'migrate')\n"
        "print(lock.try_acquire(), lock.holder()['run_id'])\n"
    )

    def other() -> str:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True)
        return done.stdout.decode().strip()

    assert other() == "False r1"
    ours.close()  # what the kernel does when the agent dies
    assert other() == "True r1"


def test_a_second_open_of_a_held_lock_in_the_same_process_is_busy(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    first, second = Lock(state, "x"), Lock(state, "x")
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
    finally:
        first.close()
        second.close()


def test_an_unreadable_holder_record_reads_as_nobody(tmp_path: Path) -> None:
    lock = Lock(StateDir(str(tmp_path)), "x")
    try:
        Path(lock.path).write_text("{not json")
        assert lock.holder() == {}
    finally:
        lock.close()


# -- detached runs ---------------------------------------------------------------


def _live_status(**extra: object) -> dict[str, object]:
    """The status of a run whose process is alive: this test process itself."""
    return {"pid": os.getpid(), "starttime": proc_starttime(os.getpid()), **extra}


def test_our_own_process_has_a_start_time() -> None:
    assert proc_starttime(os.getpid()) is not None
    assert proc_starttime(0) is None  # no /proc/0


def test_an_ended_run_is_over_even_while_its_pid_lives() -> None:
    assert run_is_over(_live_status(state="ended"))


def test_a_running_run_whose_process_lives_is_not_over() -> None:
    assert not run_is_over(_live_status(state="running"))


def test_a_running_run_whose_pid_was_reused_is_over() -> None:
    assert run_is_over(_live_status(state="running", starttime="1"))


def test_a_running_run_whose_process_is_gone_is_over() -> None:
    assert run_is_over({"state": "running", "pid": 0, "starttime": "12345"})


def _write_run(
    runs: Path, run_id: str, status: dict[str, object], age: float, log: bool = True
) -> None:
    path = runs / (run_id + ".json")
    path.write_text(json.dumps(status))
    if log:
        (runs / (run_id + ".log")).write_text("x\n")
    then = time.time() - age
    os.utime(path, (then, then))


def test_prune_removes_old_finished_and_lost_runs_and_keeps_the_rest(tmp_path: Path) -> None:
    _write_run(tmp_path, "old-ended", {"state": "ended"}, age=2 * DAY)
    _write_run(tmp_path, "old-lost", {"state": "running", "pid": 0, "starttime": "1"}, 2 * DAY)
    _write_run(tmp_path, "old-running", _live_status(state="running"), age=2 * DAY)
    _write_run(tmp_path, "new-ended", {"state": "ended"}, age=60)
    _write_run(tmp_path, "new-lost", {"state": "running", "pid": 0, "starttime": "1"}, 60)
    RunsDir(str(tmp_path), keep=DAY).prune()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [
        "new-ended.json",
        "new-ended.log",
        "new-lost.json",
        "new-lost.log",
        "old-running.json",
        "old-running.log",
    ]


def test_prune_leaves_unparsable_status_and_other_files_alone(tmp_path: Path) -> None:
    (tmp_path / "half.json").write_text("{")
    (tmp_path / "notes.txt").write_text("")
    _write_run(tmp_path, "gone", {"state": "ended"}, age=2 * DAY, log=False)  # no log: fine
    for name in ("half.json", "notes.txt"):
        then = time.time() - 2 * DAY
        os.utime(tmp_path / name, (then, then))
    RunsDir(str(tmp_path), keep=DAY).prune()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.json", "notes.txt"]


def test_status_is_written_whole_with_no_temporary_left(tmp_path: Path) -> None:
    runs = RunsDir(str(tmp_path), keep=DAY)
    runs.write_status("r1", {"state": "running", "pid": 7})
    runs.write_status("r1", {"state": "ended", "status": 0})
    assert json.loads((tmp_path / "r1.json").read_text()) == {"state": "ended", "status": 0}
    assert [p.name for p in tmp_path.iterdir()] == ["r1.json"]


def _log_lines(path: Path) -> list[tuple[bytes, bytes]]:
    out = []
    for line in path.read_bytes().splitlines():
        stamp, stream, text = line.split(b" ", 2)
        assert re.fullmatch(STAMP, stamp), stamp
        out.append((stream, text))
    return out


def test_log_stamps_whole_lines_and_tells_the_streams_apart(tmp_path: Path) -> None:
    log = TimestampedLog(str(tmp_path / "r.log"))
    log.write("stdout", b"one\ntw")
    log.write("stderr", b"oops\n")
    log.write("stdout", b"o\nthree")
    assert _log_lines(tmp_path / "r.log") == [(b"o", b"one"), (b"e", b"oops"), (b"o", b"two")]
    log.close()  # the unfinished line is not lost
    assert _log_lines(tmp_path / "r.log")[-1] == (b"o", b"three")


def test_log_writes_a_very_long_line_without_waiting_for_its_newline(tmp_path: Path) -> None:
    log = TimestampedLog(str(tmp_path / "r.log"))
    try:
        log.write("stdout", b"x" * (CHUNK + 1))
        assert _log_lines(tmp_path / "r.log") == [(b"o", b"x" * (CHUNK + 1))]
        log.write("stdout", b"x" * CHUNK)  # not longer than CHUNK: still waits
        assert len(_log_lines(tmp_path / "r.log")) == 1
    finally:
        log.close()
