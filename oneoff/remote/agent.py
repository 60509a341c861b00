"""The oneoff agent: runs on the host, under the release's own venv Python, one admin command.

Standard library only, Python >= 3.8: it is sent as one program (``oneoff.remote.source``,
all of oneoff.remote in dependency order, this module last) and executed by BOOT, so it
must not import oneoff there. The client talks to the agent in frames on the channel's
stdin; the agent answers in frames on the channel's stderr, while the command's stdout
is the channel's stdout itself (see protocol.py).

This module is the run's sequence: read the spec, build the env, plan or lock, audit,
detach, then hand the command to the Supervisor and report how it ended.
"""

import json
import os
import select
import sys
import time
from typing import Any, Dict, Optional

if not globals().get("ONEOFF_INLINE"):  # imported as a package; inline, these precede us
    from oneoff.remote.envfile import EnvFileError, load_env_files
    from oneoff.remote.fdio import CHUNK, Outbox, read_exactly, read_to_end, write_all
    from oneoff.remote.protocol import FRAME, MAX_FRAME, PROTOCOL_VERSION, SPEC, SYNC, encode_event
    from oneoff.remote.state import (
        Lock,
        RunsDir,
        StateDir,
        TimestampedLog,
        now_iso,
        proc_starttime,
    )
    from oneoff.remote.supervise import Supervisor

EXIT_LOCK_BUSY = 75
EXIT_NOT_RUN = 255
RUNS_KEEP = 30 * 86400.0  # seconds a finished detached run's status and log are kept


def read_spec(fd: int) -> Dict[str, Any]:
    """The first frame after our source: the run spec, in the protocol we speak."""
    kind, size = FRAME.unpack(read_exactly(fd, FRAME.size))
    if kind != SPEC or size > MAX_FRAME:
        raise ValueError("expected the run spec first")
    spec = json.loads(read_exactly(fd, size).decode())
    if spec.get("protocol") != PROTOCOL_VERSION:
        raise ValueError(
            "client speaks protocol %r, agent %d" % (spec.get("protocol"), PROTOCOL_VERSION)
        )
    return spec  # type: ignore[no-any-return]


def build_env(spec: Dict[str, Any], base: Dict[str, str]) -> Dict[str, str]:
    """The command's environment: the login env, the env files, -e values, then the venv.

    Raises EnvFileError (file and line, never a value) for an unreadable or bad file.
    """
    env = dict(base)
    env.update(load_env_files(spec["env_files"], base))
    env.update(spec.get("extra_env") or {})
    venv = spec["venv"]
    env["VIRTUAL_ENV"] = venv
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", os.defpath)
    env.pop("PYTHONHOME", None)
    # Output should stream as the command writes it, not when its buffer fills.
    env.setdefault("PYTHONUNBUFFERED", "1")
    if spec.get("pty"):
        env["TERM"] = spec.get("term") or "xterm-256color"
    env["ONEOFF_RUN_ID"] = spec["run_id"]
    env["ONEOFF_RELEASE"] = spec["release_id"]
    return env


def exit_status(outcome: Dict[str, Any]) -> int:
    """The agent's own exit status, as a shell would give it: 128+N for signal N."""
    if outcome.get("status") is not None:
        return int(outcome["status"])
    return 128 + int(outcome.get("signal_number") or 1)


class Agent:
    """One supervised run: env, lock, audit, then the command under the Supervisor."""

    def __init__(self, spec: Dict[str, Any], fd_in: int = 0, fd_out: int = 2) -> None:
        self.spec = spec
        self.fd_in = fd_in
        self.outbox = Outbox(fd_out)  # frames for the client; dropped once detached
        self.state = StateDir(spec["state_dir"])
        self.audit = bool(spec.get("audit", True))
        self.lock: Optional[Lock] = None
        self.runs: Optional[RunsDir] = None  # detached runs only
        self.ready_w: Optional[int] = None  # detached: tells the waiting parent how the start went
        self.log: Optional[TimestampedLog] = None
        self.start_iso = now_iso()
        self.early = bytearray()  # client frames that arrived before the command started
        self.started = time.time()

    # -- output to the client -------------------------------------------------
    def event(self, event: str, **fields: Any) -> None:
        self.outbox.event(event, **fields)

    def flush(self, deadline: float) -> None:
        self.outbox.flush(deadline)

    def fail(self, kind: str, message: str, status: int = EXIT_NOT_RUN, **fields: Any) -> int:
        self.event("error", kind=kind, message=message, **fields)
        self.flush(time.time() + 5)
        return status

    # -- the run ----------------------------------------------------------------
    def run(self) -> int:
        try:
            env = build_env(self.spec, dict(os.environ))
        except EnvFileError as exc:
            return self.fail("env_file", str(exc), path=exc.path, line=exc.line)
        if self.spec["mode"] == "plan":
            return self.plan(env)
        status = self.prepare_state()
        if status is not None:
            return status
        record = self.audit_base()
        if self.spec.get("detach"):
            status = self.detach(record)
            if status is not None:
                return status
        return self.supervise(env, record)

    def prepare_state(self) -> Optional[int]:
        """state_dir writable and the lock taken; else the exit status of not running."""
        lock = self.spec.get("lock")
        try:
            if self.audit:
                self.state.ensure()
            if lock:
                return self.take_lock(lock, float(self.spec.get("lock_wait") or 0))
        except OSError as exc:
            path = exc.filename or self.state.path
            return self.fail(
                "state_dir",
                "cannot write %s: %s" % (path, exc.strerror),
                path=path,
                lock=bool(lock),
            )
        return None

    def detach(self, record: Dict[str, Any]) -> Optional[int]:
        """None in the detached child, which goes on to run; the parent's exit status else."""
        try:
            runs = RunsDir(
                self.state.ensure("runs"), float(self.spec.get("runs_keep") or RUNS_KEEP)
            )
            runs.prune()
        except OSError as exc:
            return self.fail("state_dir", "cannot write %s: %s" % (exc.filename, exc.strerror))
        if not self.fork_detached(runs, record):
            return 0  # the client's half: the run goes on in its own session
        self.runs = runs
        self.log = runs.open_log(self.spec["run_id"])
        return None

    def supervise(self, env: Dict[str, str], record: Dict[str, Any]) -> int:
        if self.audit:
            self.state.audit(dict(record, type="start", start=now_iso(), pid=os.getpid()))
        outcome = Supervisor(
            self.spec,
            env,
            self.outbox,
            self.fd_in,
            log=self.log,
            early=bytes(self.early),
            on_spawn=self.answer_parent,
        ).loop()
        if self.log is not None:
            self.log.close()
        outcome["duration"] = round(time.time() - self.started, 3)
        if self.audit:
            self.audit_end(record, outcome)
        if self.runs is not None:
            fields = dict(self.status_fields(), state="ended", end=now_iso(), **outcome)
            self.runs.write_status(self.spec["run_id"], dict(record, **fields))
            return 0
        self.event("exit", **outcome)
        self.flush(time.time() + (0.5 if outcome.get("client_lost") else 10.0))
        return exit_status(outcome)

    def audit_end(self, record: Dict[str, Any], outcome: Dict[str, Any]) -> None:
        """A failed end record does not change the outcome; it is reported alongside it."""
        try:
            self.state.audit(dict(record, type="end", end=now_iso(), **outcome))
        except OSError as exc:
            outcome["audit_error"] = "%s: %s" % (exc.filename, exc.strerror)

    # -- detaching ----------------------------------------------------------------
    def answer_parent(self, answer: bytes) -> None:
        if self.ready_w is not None:
            write_all(self.ready_w, answer)
            os.close(self.ready_w)
            self.ready_w = None

    def status_fields(self) -> Dict[str, Any]:
        return {
            "pid": os.getpid(),
            "start": self.start_iso,
            "starttime": proc_starttime(os.getpid()),
        }

    def fork_detached(self, runs: RunsDir, record: Dict[str, Any]) -> bool:
        """Fork the run into its own session; True in the detached child, False in the parent.

        The child lets go of the SSH channel (stdio to /dev/null) so the connection can
        close, keeps the lock (flock is shared across fork), writes its status file and
        starts the command; only then does the parent tell the client the run started, so
        a command that cannot start is an error here, as it would be attached.
        """
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid:
            os.close(ready_w)
            self.report_detached(pid, ready_r, runs)
            return False
        os.close(ready_r)
        self.become_detached(ready_w, runs, record)
        return True

    def report_detached(self, pid: int, ready_r: int, runs: RunsDir) -> None:
        """In the parent: wait for the child's word on the start and tell the client."""
        answer = read_to_end(ready_r)
        os.close(ready_r)
        if answer == b"ok":
            self.event("detached", run_id=self.spec["run_id"], pid=pid)
            self.flush(time.time() + 10)
        elif answer.startswith(b"spawn:"):
            status, _, message = answer[6:].decode("utf-8", "replace").partition(":")
            self.event("error", kind="spawn", message=message, status=int(status))
            self.flush(time.time() + 10)
        else:
            self.fail("detach", "the detached run did not start (see %s)" % runs.path)

    def become_detached(self, ready_w: int, runs: RunsDir, record: Dict[str, Any]) -> None:
        """In the child: a session of its own, no channel, a status file saying running."""
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        self.outbox.detached = True
        self.start_iso = now_iso()
        runs.write_status(
            self.spec["run_id"], dict(record, **self.status_fields(), state="running")
        )
        self.ready_w = ready_w  # answered once the command has started (Supervisor.loop)

    # -- plan and lock ------------------------------------------------------------
    def plan(self, env: Dict[str, str]) -> int:
        """Dry run: report what the command would get, as counts and names, never values."""
        files = []
        base = dict(os.environ)
        for path in self.spec["env_files"]:
            keys = sorted(load_env_files([path], base))
            files.append({"path": path, "keys": len(keys)})
        self.event(
            "plan",
            env_files=files,
            extra_env_keys=sorted(self.spec.get("extra_env") or {}),
            cwd=self.spec["release"],
            path_head=env["PATH"].split(os.pathsep)[0],
            task=self.spec.get("task"),
            task_source=self.spec.get("task_source"),
            lock=self.spec.get("lock"),
            timeout=self.spec.get("timeout"),
            tty=bool(self.spec.get("pty")),
        )
        self.flush(time.time() + 10)
        return 0

    def audit_base(self) -> Dict[str, Any]:
        spec = self.spec
        return {
            "run_id": spec["run_id"],
            "host": spec.get("host"),
            "operator": spec.get("operator"),
            "release_id": spec["release_id"],
            "revision": spec.get("revision"),
            "command": spec["display"],
            "argv": spec["argv"],
            "task": spec.get("task"),
            "lock": spec.get("lock"),
            "tty": bool(spec.get("pty")),
        }

    def take_lock(self, name: str, wait: float) -> Optional[int]:
        """Take the lock, waiting up to ``wait`` seconds; None once held, else the exit status."""
        lock = Lock(self.state, name)
        deadline = time.time() + wait
        announced = False
        while not lock.try_acquire():
            holder = lock.holder()
            if time.time() >= deadline:
                self.event("lock_busy", lock=name, holder=holder, path=lock.path, waited=wait)
                self.flush(time.time() + 5)
                return EXIT_LOCK_BUSY
            if not announced:
                self.event("lock_wait", lock=name, holder=holder, path=lock.path)
                self.flush(time.time() + 5)
                announced = True
            if self.client_gone_while_waiting(0.25):
                lock.close()
                return EXIT_NOT_RUN
        lock.record(dict(self.audit_base(), since=now_iso(), pid=os.getpid()))
        self.lock = lock
        return None

    def client_gone_while_waiting(self, seconds: float) -> bool:
        """Wait a little; True when the client hung up (stdin closed) meanwhile."""
        readable, _, _ = select.select([self.fd_in], [], [], seconds)
        if not readable:
            return False
        try:
            data = os.read(self.fd_in, CHUNK)
        except OSError:
            return True
        if not data:
            return True
        self.early += data  # heartbeats and stdin, handed to the supervisor later
        return False


def main() -> int:
    write_all(2, SYNC)
    try:
        spec = read_spec(0)
    except EOFError:
        return EXIT_NOT_RUN  # the client changed its mind (bad plan) or went away
    agent = Agent(spec)
    try:
        return agent.run()
    except Exception as exc:  # an agent bug: report it as an event, never a raw traceback
        report_crash(agent.outbox, exc)
        return EXIT_NOT_RUN
    finally:
        if agent.lock is not None:
            agent.lock.close()


def report_crash(outbox: Outbox, exc: Exception) -> None:
    """What was queued, then the line that failed (of the shipped source), never a traceback."""
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        where = "line %d" % tb.tb_lineno
        tb = tb.tb_next
    os.set_blocking(outbox.fd, True)
    write_all(outbox.fd, bytes(outbox.buf))
    message = "agent failed at %s: %s" % (where, type(exc).__name__)
    write_all(outbox.fd, encode_event("error", kind="agent", message=message))


if __name__ == "__main__":
    sys.exit(main())
