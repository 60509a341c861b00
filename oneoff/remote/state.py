"""What the agent keeps in ``state_dir`` on the host: locks, the audit log, detached runs.

Everything here must stay correct with several agents (several operators, several
runs) writing at once and with agents that die at any moment: locks are flocks the
kernel drops, the audit is one ``O_APPEND`` write per record, status files are
replaced by rename.
"""

import errno
import fcntl
import json
import os
import time
from contextlib import suppress
from typing import Any, Dict, Optional

if not globals().get("ONEOFF_INLINE"):  # imported as a package; inline, fdio precedes us
    from oneoff.remote.fdio import CHUNK


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def now_precise() -> str:
    """UTC with milliseconds: lines of a detached run's log sort and line up by it."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (
        int(now * 1000) % 1000
    )


def proc_starttime(pid: int) -> Optional[str]:
    """Field 22 of /proc/PID/stat: tells a live run from a reused PID after a reboot."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class StateDir:
    """``state_dir`` on the host: locks/ and the append-only audit.jsonl."""

    def __init__(self, path: str) -> None:
        self.path = path

    def ensure(self, sub: str = "") -> str:
        """Create the directory; PermissionError now rather than halfway through a run."""
        target = os.path.join(self.path, sub) if sub else self.path
        os.makedirs(target, mode=0o750, exist_ok=True)
        if not os.access(target, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), target)
        return target

    def audit(self, record: Dict[str, Any]) -> None:
        """Append one JSON line with a single write, so concurrent runs never interleave."""
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        fd = os.open(
            os.path.join(self.ensure(), "audit.jsonl"),
            os.O_WRONLY | os.O_APPEND | os.O_CREAT,
            0o640,
        )
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


class Lock:
    """An flock on state_dir/locks/NAME.lock, held for the command's whole life.

    The kernel releases it when the agent dies, however it dies; the file's content
    names the holder for whoever finds it busy.
    """

    def __init__(self, state: StateDir, name: str) -> None:
        self.name = name
        self.path = os.path.join(state.ensure("locks"), name + ".lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise

    def holder(self) -> Dict[str, Any]:
        """Who holds it, as they recorded it; {} while they have not written yet."""
        try:
            with open(self.path) as handle:
                return json.loads(handle.read() or "{}")  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}

    def close(self) -> None:
        os.close(self.fd)

    def record(self, holder: Dict[str, Any]) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(holder, sort_keys=True).encode(), 0)


def run_is_over(status: Dict[str, Any]) -> bool:
    """A detached run is over when it says so, or when its process is gone (lost).

    The pid alone is not enough: after a reboot it may belong to someone else, so the
    process's start time must match the one the run recorded.
    """
    if status.get("state") == "ended":
        return True
    return proc_starttime(int(status.get("pid") or 0)) != status.get("starttime")


class RunsDir:
    """``state_dir/runs``: each detached run's ``<id>.json`` status and ``<id>.log`` output."""

    def __init__(self, path: str, keep: float) -> None:
        self.path = path
        self.keep = keep

    def write_status(self, run_id: str, status: Dict[str, Any]) -> None:
        """Atomically (rename), so `oneoff ps` never reads half a file."""
        final = os.path.join(self.path, run_id + ".json")
        tmp = final + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(json.dumps(status, sort_keys=True) + "\n")
        os.replace(tmp, final)

    def open_log(self, run_id: str) -> "TimestampedLog":
        return TimestampedLog(os.path.join(self.path, run_id + ".log"))

    def prune(self) -> None:
        """Remove finished and lost runs older than runs_keep (by their status file's mtime).

        A file that cannot be read or parsed is left alone: it may be being replaced.
        """
        cutoff = time.time() - self.keep
        for name in os.listdir(self.path):
            if name.endswith(".json"):
                with suppress(OSError, ValueError):
                    self._prune_one(os.path.join(self.path, name), cutoff)

    def _prune_one(self, path: str, cutoff: float) -> None:
        with open(path) as handle:
            status = json.load(handle)
        if run_is_over(status) and os.stat(path).st_mtime < cutoff:
            for suffix in (".json", ".log"):
                with suppress(FileNotFoundError):
                    os.unlink(path[: -len(".json")] + suffix)


class TimestampedLog:
    """Output of a detached run: ``<UTC time> <o|e> <line>`` per line, both streams interleaved.

    `oneoff logs` strips the first two fields unless asked for --timestamps.
    """

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self.partial: Dict[str, bytes] = {}

    def write(self, stream: str, data: bytes) -> None:
        """Whole lines only, so each gets its own stamp; a partial one waits for its end."""
        text = self.partial.pop(stream, b"") + data
        lines = text.split(b"\n")
        rest = lines.pop()
        if len(rest) > CHUNK:  # a very long line without newline: write it anyway
            lines.append(rest)
            rest = b""
        if rest:
            self.partial[stream] = rest
        if lines:
            stamp = now_precise().encode() + (b" o " if stream == "stdout" else b" e ")
            os.write(self.fd, b"".join(stamp + line + b"\n" for line in lines))

    def close(self) -> None:
        for stream in list(self.partial):
            rest = self.partial.pop(stream)
            if rest:
                self.write(stream, rest + b"\n")
        os.close(self.fd)
