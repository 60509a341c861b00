# The oneoff agent: runs on the host, under the release's own venv Python, and
# supervises one admin command. Standard library only, Python >= 3.8: it is sent
# inline (after envfile.py's and protocol.py's sources) and executed by BOOT, so it must not import
# oneoff. The client talks to the agent in frames on the channel's stdin; the agent
# answers in frames on the channel's stderr (see FRAME and SYNC below), while the
# command's stdout is the channel's stdout itself.
import errno
import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from contextlib import suppress
from typing import Any, Dict, List, Optional, Tuple

# Imported as a module on the client and in tests; shipped inline, the sources of
# envfile.py and protocol.py precede this one and the imports fail harmlessly.
with suppress(ImportError):
    from oneoff.remote.envfile import EnvFileError, load_env_files
    from oneoff.remote.protocol import (
        ALIVE,
        FRAME,
        MAX_FRAME,
        PROTOCOL_VERSION,
        SIGNAL,
        SPEC,
        STDERR,
        STDIN,
        STDIN_EOF,
        STDOUT,
        SYNC,
        WINCH,
        FrameReader,
        encode_event,
        encode_frame,
    )

CHUNK = 1 << 16
BUFFER_LIMIT = 1 << 20  # bytes held per direction before back-pressure applies
DRAIN_AFTER_EXIT = 2.0  # seconds to collect output left by a finished command's children
EXIT_LOCK_BUSY = 75
EXIT_NOT_RUN = 255


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _read_exactly(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def read_spec(fd: int) -> Dict[str, Any]:
    kind, size = FRAME.unpack(_read_exactly(fd, FRAME.size))
    if kind != SPEC or size > MAX_FRAME:
        raise ValueError("expected the run spec first")
    spec = json.loads(_read_exactly(fd, size).decode())
    if spec.get("protocol") != PROTOCOL_VERSION:
        raise ValueError(
            "client speaks protocol %r, agent %d" % (spec.get("protocol"), PROTOCOL_VERSION)
        )
    return spec  # type: ignore[no-any-return]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)


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


class StateDir:
    """``state_dir`` on the host: locks/ and the append-only audit.jsonl."""

    def __init__(self, path: str) -> None:
        self.path = path

    def ensure(self, sub: str = "") -> str:
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
        """Remove finished and lost runs older than runs_keep (by their status file's mtime)."""
        cutoff = time.time() - self.keep
        for name in os.listdir(self.path):
            if not name.endswith(".json"):
                continue
            path = os.path.join(self.path, name)
            try:
                with open(path) as handle:
                    status = json.load(handle)
                # a run is over when it says so, or when its process is gone (lost)
                over = status.get("state") == "ended" or _proc_starttime(
                    int(status.get("pid") or 0)
                ) != status.get("starttime")
                if over and os.stat(path).st_mtime < cutoff:
                    for suffix in (".json", ".log"):
                        with suppress(FileNotFoundError):
                            os.unlink(path[: -len(".json")] + suffix)
            except (OSError, ValueError):
                continue


class TimestampedLog:
    """Output of a detached run: ``<UTC time> <o|e> <line>`` per line, both streams interleaved.

    `oneoff logs` strips the first two fields unless asked for --timestamps.
    """

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self.partial: Dict[str, bytes] = {}

    def write(self, stream: str, data: bytes) -> None:
        text = self.partial.pop(stream, b"") + data
        lines = text.split(b"\n")
        rest = lines.pop()
        if len(rest) > CHUNK:  # a very long line without newline: write it anyway
            lines.append(rest)
            rest = b""
        if rest:
            self.partial[stream] = rest
        if lines:
            stamp = _now_precise().encode() + (b" o " if stream == "stdout" else b" e ")
            os.write(self.fd, b"".join(stamp + line + b"\n" for line in lines))

    def close(self) -> None:
        for stream in list(self.partial):
            rest = self.partial.pop(stream)
            if rest:
                self.write(stream, rest + b"\n")
        os.close(self.fd)


def _now_precise() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (
        int(now * 1000) % 1000
    )


def _proc_starttime(pid: int) -> Optional[str]:
    """Field 22 of /proc/PID/stat: tells a live run from a reused PID after a reboot."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Agent:
    """One supervised run: env, lock, audit, then the command under a poll loop."""

    def __init__(self, spec: Dict[str, Any], fd_in: int = 0, fd_out: int = 2) -> None:
        self.spec = spec
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.state = StateDir(spec["state_dir"])
        self.lock: Optional[Lock] = None
        self.out = bytearray()  # frames waiting for the client
        self.detached = False  # a --detach run after the fork: no client, output to a log
        self.ready_w: Optional[int] = None  # detached: tells the waiting parent how the start went
        self.log: Optional[TimestampedLog] = None
        self.start_iso = _now_iso()
        self.early = bytearray()  # client frames that arrived before the command started
        self.started = time.time()
        interval = float(spec.get("alive_interval", 10.0))
        if interval > 0:
            self.alive_every = max(0.2, interval / 2)
            self.client_timeout = interval * int(spec.get("alive_count_max") or 3)
        else:  # keepalives off: only a closed channel means the client is gone
            self.alive_every = 30.0
            self.client_timeout = float("inf")

    # -- output to the client -------------------------------------------------
    def send(self, data: bytes) -> None:
        if not self.detached:
            self.out += data

    def event(self, event: str, **fields: Any) -> None:
        self.send(encode_event(event, **fields))

    def flush(self, deadline: float) -> None:
        """Block until queued frames are written or the deadline passes (client gone)."""
        while self.out and time.time() < deadline:
            try:
                n = os.write(self.fd_out, self.out)
                del self.out[:n]
            except BlockingIOError:
                select.select([], [self.fd_out], [], max(0.0, deadline - time.time()))
            except OSError:
                self.out.clear()
                return

    def fail(self, kind: str, message: str, status: int = EXIT_NOT_RUN, **fields: Any) -> int:
        self.event("error", kind=kind, message=message, **fields)
        self.flush(time.time() + 5)
        return status

    # -- the run ----------------------------------------------------------------
    def run(self) -> int:
        spec = self.spec
        try:
            env = build_env(spec, dict(os.environ))
        except EnvFileError as exc:
            return self.fail("env_file", str(exc), path=exc.path, line=exc.line)
        if spec["mode"] == "plan":
            return self.plan(env)
        audit = bool(spec.get("audit", True))
        try:
            if audit:
                self.state.ensure()
            if spec.get("lock"):
                status = self.take_lock(spec["lock"], float(spec.get("lock_wait") or 0))
                if status is not None:
                    return status
        except OSError as exc:
            return self.fail(
                "state_dir",
                "cannot write %s: %s" % (exc.filename or self.state.path, exc.strerror),
                path=exc.filename or self.state.path,
                lock=bool(spec.get("lock")),
            )
        record = self.audit_base()
        if spec.get("detach"):
            try:
                runs = RunsDir(
                    self.state.ensure("runs"), float(spec.get("runs_keep") or 30 * 86400)
                )
                runs.prune()
            except OSError as exc:
                return self.fail("state_dir", "cannot write %s: %s" % (exc.filename, exc.strerror))
            if not self.fork_detached(runs, record):
                return 0  # the client's half: the run goes on in its own session
            self.log = runs.open_log(spec["run_id"])
        if audit:
            self.state.audit(dict(record, type="start", start=_now_iso(), pid=os.getpid()))
        outcome = self.supervise(env)
        if self.log is not None:
            self.log.close()
        outcome["duration"] = round(time.time() - self.started, 3)
        if audit:
            try:
                self.state.audit(dict(record, type="end", end=_now_iso(), **outcome))
            except OSError as exc:
                outcome["audit_error"] = "%s: %s" % (exc.filename, exc.strerror)
        if spec.get("detach"):
            runs.write_status(
                spec["run_id"],
                dict(record, **self.status_fields(), state="ended", end=_now_iso(), **outcome),
            )
            return 0
        self.event("exit", **outcome)
        self.flush(time.time() + (0.5 if outcome.get("client_lost") else 10.0))
        if outcome.get("status") is not None:
            return int(outcome["status"])
        return 128 + int(outcome.get("signal_number") or 1)

    def answer_parent(self, answer: bytes) -> None:
        if self.ready_w is not None:
            _write_all(self.ready_w, answer)
            os.close(self.ready_w)
            self.ready_w = None

    def status_fields(self) -> Dict[str, Any]:
        return {
            "pid": os.getpid(),
            "start": self.start_iso,
            "starttime": _proc_starttime(os.getpid()),
        }

    def fork_detached(self, runs: "RunsDir", record: Dict[str, Any]) -> bool:
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
            answer = b""
            while True:
                chunk = os.read(ready_r, 4096)
                if not chunk:
                    break
                answer += chunk
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
            return False
        os.close(ready_r)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        self.detached = True
        self.start_iso = _now_iso()
        runs.write_status(
            self.spec["run_id"], dict(record, **self.status_fields(), state="running")
        )
        self.ready_w = ready_w  # answered once the command has started (Supervisor.loop)
        return True

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
        lock.record(dict(self.audit_base(), since=_now_iso(), pid=os.getpid()))
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

    def supervise(self, env: Dict[str, str]) -> Dict[str, Any]:
        return Supervisor(self, env).loop()


class Supervisor:
    """The poll loop: relays bytes both ways, heartbeats, signals, timeout, hang-up."""

    def __init__(self, agent: Agent, env: Dict[str, str]) -> None:
        self.agent = agent
        spec = agent.spec
        self.pty = bool(spec.get("pty"))
        self.timeout = spec.get("timeout")
        self.kill_after = float(spec.get("kill_after") or 10.0)
        self.reader = FrameReader()
        self.stdin_buf = bytearray()
        self.master: Optional[int] = None
        self.stdin_eof = False
        self.client_lost = False
        self.timed_out = False
        self.stop_reason: Optional[str] = None
        self.kill_at: Optional[float] = None
        self.outcome: Dict[str, Any] = {}
        self.env = env

    # -- starting the command ---------------------------------------------------
    def spawn(
        self,
    ) -> Tuple[subprocess.Popen, Optional[int], Optional[int], Optional[int]]:  # type: ignore[type-arg]
        spec = self.agent.spec
        argv = spec["argv"]
        if self.pty:
            master, slave = os.openpty()
            rows, cols = spec.get("winsize") or (24, 80)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            try:
                child = subprocess.Popen(
                    argv,
                    cwd=spec["release"],
                    env=self.env,
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    start_new_session=True,
                    preexec_fn=_take_controlling_tty,
                )
            finally:
                os.close(slave)
            return child, master, None, master
        if self.agent.detached:  # no client: both streams go to the run's log, through us
            child = subprocess.Popen(
                argv,
                cwd=spec["release"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with_agent,
            )
            assert child.stdout and child.stderr
            return child, child.stdout.fileno(), child.stderr.fileno(), None
        child = subprocess.Popen(
            argv,
            cwd=spec["release"],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=None,  # the channel's stdout itself: bulk output never passes through us
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_agent,
        )
        assert child.stdin and child.stderr
        return child, None, child.stderr.fileno(), child.stdin.fileno()

    def loop(self) -> Dict[str, Any]:
        agent = self.agent
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w, agent.fd_out):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, self.on_signal)
        self.signals: List[int] = []
        try:
            child, out_fd, err_fd, in_fd = self.spawn()
        except OSError as exc:
            not_run = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
            message = "cannot run %s: %s" % (agent.spec["argv"][0], exc.strerror)
            agent.event("error", kind="spawn", message=message, status=not_run)
            agent.answer_parent(b"spawn:%d:%s" % (not_run, message.encode()))
            return {"status": not_run, "signal": None, "error": "spawn"}
        agent.answer_parent(b"ok")
        self.child = child
        self.pgid = child.pid
        if self.pty:
            self.master = out_fd
        self.on_client_bytes(bytes(agent.early))
        start = time.time()
        agent.event("started", pid=child.pid, run_id=agent.spec["run_id"])
        deadline = start + float(self.timeout) if self.timeout else None
        last_from_client = time.time()
        last_to_client = 0.0
        open_out = [fd for fd in (out_fd, err_fd) if fd is not None]
        if in_fd is not None:
            os.set_blocking(in_fd, False)
        exited_at: Optional[float] = None
        status: Optional[int] = None
        poller = select.poll()
        while True:
            now = time.time()
            # what to watch this round
            registered: Dict[int, int] = {}
            want_in = (
                len(self.stdin_buf) < BUFFER_LIMIT and not self.client_lost and not agent.detached
            )
            if not self.client_lost and not agent.detached:
                # paused for back-pressure, still watch for hang-up (poll always reports it)
                registered[agent.fd_in] = select.POLLIN if want_in else 0
            if not want_in:
                last_from_client = now
            if len(agent.out) < BUFFER_LIMIT:
                for fd in open_out:
                    registered[fd] = select.POLLIN
            if agent.out and not self.client_lost:
                registered[agent.fd_out] = registered.get(agent.fd_out, 0) | select.POLLOUT
            if in_fd is not None and (self.stdin_buf or (self.stdin_eof and not self.pty)):
                registered[in_fd] = registered.get(in_fd, 0) | select.POLLOUT
            registered[wake_r] = select.POLLIN
            for fd, mask in registered.items():
                poller.register(fd, mask)
            timers = [now + agent.alive_every]
            if deadline and not self.timed_out:
                timers.append(deadline)
            if self.kill_at:
                timers.append(self.kill_at)
            if exited_at is not None:
                timers.append(exited_at + DRAIN_AFTER_EXIT)
            if want_in:
                timers.append(min(last_from_client + agent.client_timeout, now + 3600))
            wait_ms = max(0, int((min(timers) - now) * 1000) + 1)
            try:
                ready = poller.poll(wait_ms)
            except InterruptedError:
                ready = []
            for fd in registered:
                poller.unregister(fd)
            now = time.time()
            for fd, mask in ready:
                if fd == wake_r:
                    _drain(wake_r)
                    continue
                if fd == agent.fd_in:
                    if mask & select.POLLIN:
                        data = _read(fd)
                    else:
                        data = b"" if mask & (select.POLLHUP | select.POLLERR) else None
                    if data:
                        last_from_client = now
                        self.on_client_bytes(data)
                    elif data is not None:
                        self.lose_client("stdin closed")
                    continue
                if fd == agent.fd_out:
                    try:
                        n = os.write(fd, agent.out)
                        del agent.out[:n]
                        last_to_client = now
                    except BlockingIOError:
                        pass
                    except OSError:
                        self.lose_client("stdout closed")
                    continue
                # a PTY master is both the command's input and its output: check both
                if fd == in_fd and mask & (select.POLLOUT | select.POLLERR):
                    self.write_stdin(in_fd)
                    if self.stdin_eof and not self.stdin_buf and not self.pty:
                        os.close(in_fd)
                        in_fd = None
                        continue
                if fd in open_out and mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    data = _read(fd)
                    if data and agent.log is not None:
                        agent.log.write("stderr" if fd == err_fd else "stdout", data)
                    elif data:
                        agent.send(encode_frame(STDERR if fd == err_fd else STDOUT, data))
                    elif data is not None:
                        open_out.remove(fd)
                        if fd != self.master:
                            os.close(fd)
            for got in self.signals:
                if got == signal.SIGCHLD:
                    continue
                # the agent itself was told to stop (sshd hang-up, kill): stop the command
                self.begin_stop("agent got signal %d" % got, got)
            self.signals = []
            if status is None:
                status = child.poll()
                if status is not None:
                    exited_at = now
                    _signal_group(
                        self.pgid, signal.SIGTERM
                    )  # leftover children of a finished one-off
            if want_in and now - last_from_client > agent.client_timeout:
                self.lose_client("no heartbeat for %.0fs" % agent.client_timeout)
            if deadline and not self.timed_out and now >= deadline and status is None:
                self.timed_out = True
                self.begin_stop("timeout", signal.SIGTERM)
            if self.kill_at and now >= self.kill_at:
                _signal_group(self.pgid, signal.SIGKILL)
                self.kill_at = None
            if not agent.out and now - last_to_client >= agent.alive_every and not self.client_lost:
                agent.send(encode_frame(ALIVE))
            if status is not None and (
                not open_out or now - (exited_at or now) >= DRAIN_AFTER_EXIT
            ):
                break
        _signal_group(self.pgid, signal.SIGKILL)
        for leftover in {*open_out, in_fd, self.master}:
            if leftover is not None:
                with suppress(OSError):
                    os.close(leftover)
        signal.set_wakeup_fd(-1)
        os.set_blocking(agent.fd_out, True)
        assert status is not None
        return self.describe(status)

    def describe(self, status: int) -> Dict[str, Any]:
        outcome: Dict[str, Any] = {
            "status": status if status >= 0 else None,
            "signal": signal.Signals(-status).name if status < 0 else None,
            "signal_number": -status if status < 0 else None,
            "timed_out": self.timed_out,
            "client_lost": self.client_lost,
        }
        if self.stop_reason:
            outcome["stop_reason"] = self.stop_reason
        return outcome

    # -- events -----------------------------------------------------------------
    def on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def on_client_bytes(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except ValueError:
            self.lose_client("garbled frame")
            return
        for kind, payload in frames:
            if kind == STDIN:
                if not self.stdin_eof:
                    self.stdin_buf += payload
            elif kind == STDIN_EOF:
                self.stdin_eof = True
                if self.pty:
                    self.stdin_buf += b"\x04"
            elif kind == SIGNAL:
                name = payload.decode("ascii", "replace")
                signum = getattr(signal, "SIG" + name, None)
                if signum in (
                    signal.SIGINT,
                    signal.SIGTERM,
                    signal.SIGHUP,
                    signal.SIGKILL,
                    signal.SIGQUIT,
                ):
                    self.begin_stop("client sent SIG" + name, signum)
            elif kind == WINCH and self.master is not None:
                rows, cols = json.loads(payload.decode())
                winsize = struct.pack("HHHH", int(rows), int(cols), 0, 0)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, winsize)

    def write_stdin(self, fd: Optional[int]) -> None:
        if fd is None or not self.stdin_buf:
            return
        try:
            n = os.write(fd, self.stdin_buf)
            del self.stdin_buf[:n]
        except BlockingIOError:
            pass
        except OSError:  # the command closed its stdin: drop what it will never read
            self.stdin_buf.clear()
            self.stdin_eof = True

    def begin_stop(self, reason: str, signum: int) -> None:
        """Signal the command's process group; SIGKILL follows after kill_after."""
        if self.stop_reason is None:
            self.stop_reason = reason
        _signal_group(self.pgid, signum)
        if signum == signal.SIGKILL:
            self.kill_at = None
        elif self.kill_at is None:
            self.kill_at = time.time() + self.kill_after

    def lose_client(self, why: str) -> None:
        if self.client_lost:
            return
        self.client_lost = True
        self.agent.out.clear()
        if self.pty:
            _signal_group(self.pgid, signal.SIGHUP)
        self.begin_stop("client lost: " + why, signal.SIGTERM)


def _die_with_agent() -> None:
    """In the child: be killed if the agent dies (Linux), so even kill -9 leaves no orphan."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _take_controlling_tty() -> None:
    _die_with_agent()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _read(fd: int) -> Optional[bytes]:
    """Read a chunk; b'' at EOF (EIO is how a PTY master says its slave closed)."""
    try:
        return os.read(fd, CHUNK)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""
        raise


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def main() -> int:
    _write_all(2, SYNC)
    try:
        spec = read_spec(0)
    except EOFError:
        return EXIT_NOT_RUN  # the client changed its mind (bad plan) or went away
    agent = Agent(spec)
    try:
        return agent.run()
    except Exception as exc:  # an agent bug: report it as an event, never a raw traceback
        where = ""
        tb = exc.__traceback__
        while tb is not None:
            where = "line %d" % tb.tb_lineno
            tb = tb.tb_next
        os.set_blocking(agent.fd_out, True)
        _write_all(agent.fd_out, bytes(agent.out))
        _write_all(
            agent.fd_out,
            encode_event(
                "error",
                kind="agent",
                message="agent failed at %s: %s" % (where, type(exc).__name__),
            ),
        )
        return EXIT_NOT_RUN
    finally:
        if agent.lock is not None:
            agent.lock.close()


if __name__ == "__main__":
    sys.exit(main())
