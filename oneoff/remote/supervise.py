"""Supervision of the running command: one poll loop, split by what each fd is for.

The roles: the client's frames in (fd 0) and out (fd 2, through the Outbox); the
command's stdin (a pipe, or the PTY master); its stderr or PTY output (both streams
of a detached run, to the log); and the timers (heartbeat, the client's silence, the
run's timeout, SIGKILL after a stop). Each round, the loop asks each role what to
watch, polls once, and hands each ready fd to its role; the timer decisions are small
classes of their own, free of fds, so they can be tested alone.
"""

import errno
import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import termios
import time
from contextlib import suppress
from typing import Any, Callable, Dict, List, Optional, Tuple

if not globals().get("ONEOFF_INLINE"):  # imported as a package; inline, these precede us
    from oneoff.remote.fdio import BUFFER_LIMIT, Outbox, drain, read_chunk
    from oneoff.remote.protocol import (
        ALIVE,
        SIGNAL,
        STDERR,
        STDIN,
        STDIN_EOF,
        STDOUT,
        WINCH,
        FrameReader,
        encode_frame,
    )
    from oneoff.remote.state import TimestampedLog

DRAIN_AFTER_EXIT = 2.0  # seconds to collect output left by a finished command's children
# The signals a client may ask for (K frames); anything else is ignored.
CLIENT_SIGNALS = {
    "INT": signal.SIGINT,
    "TERM": signal.SIGTERM,
    "HUP": signal.SIGHUP,
    "KILL": signal.SIGKILL,
    "QUIT": signal.SIGQUIT,
}
# The agent's own signals: SIGCHLD wakes the loop to reap; the others stop the command.
AGENT_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


# -- the timers: pure decisions ----------------------------------------------------


def wait_ms(now: float, timers: List[Optional[float]]) -> int:
    """Poll timeout until the earliest timer; +1 ms so we wake after it, not just before."""
    soonest = min(t for t in timers if t is not None)
    return max(0, int((soonest - now) * 1000) + 1)


class Heartbeats:
    """Liveness both ways: when to send ``h``, and when the client's silence means it is gone.

    With alive_interval 0 (keepalives off) only a closed channel counts as gone.
    """

    def __init__(self, interval: float, count_max: int, now: float) -> None:
        if interval > 0:
            self.every = max(0.2, interval / 2)
            self.timeout = interval * count_max
        else:
            self.every = 30.0
            self.timeout = float("inf")
        self.last_heard = now
        self.last_sent = 0.0

    @classmethod
    def from_spec(cls, spec: Dict[str, Any], now: float) -> "Heartbeats":
        interval = float(spec.get("alive_interval", 10.0))
        return cls(interval, int(spec.get("alive_count_max") or 3), now)

    def heard(self, now: float) -> None:
        """The client spoke, or we were not listening (back-pressure is not silence)."""
        self.last_heard = now

    def wrote(self, now: float) -> None:
        self.last_sent = now

    def silence_timer(self, now: float) -> float:
        return min(self.last_heard + self.timeout, now + 3600)

    def silent(self, now: float) -> bool:
        return now - self.last_heard > self.timeout

    def beat_due(self, now: float) -> bool:
        return now - self.last_sent >= self.every


class Escalation:
    """Stopping the command: signal its process group, then SIGKILL after kill_after.

    The first reason is the one reported; later stops only signal again.
    """

    def __init__(
        self,
        kill: Callable[[int], None],
        kill_after: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kill = kill
        self.kill_after = kill_after
        self.clock = clock
        self.reason: Optional[str] = None
        self.kill_at: Optional[float] = None

    def begin(self, reason: str, signum: int) -> None:
        if self.reason is None:
            self.reason = reason
        self.kill(signum)
        if signum == signal.SIGKILL:
            self.kill_at = None
        elif self.kill_at is None:
            self.kill_at = self.clock() + self.kill_after

    def escalate(self, now: float) -> None:
        if self.kill_at is not None and now >= self.kill_at:
            self.kill(signal.SIGKILL)
            self.kill_at = None


class Timeout:
    """The run's --timeout: expires once, and only while the command still runs."""

    def __init__(self, deadline: Optional[float]) -> None:
        self.deadline = deadline
        self.timed_out = False

    def timer(self) -> Optional[float]:
        return self.deadline if self.deadline and not self.timed_out else None

    def expire(self, now: float, running: bool) -> bool:
        """True once, the first time it is checked past the deadline with the command running."""
        deadline = self.timer()
        if deadline is None or not running or now < deadline:
            return False
        self.timed_out = True
        return True


def describe_exit(
    status: int, timed_out: bool, client_lost: bool, stop_reason: Optional[str]
) -> Dict[str, Any]:
    """The outcome as the exit event and the audit carry it (Popen's status: -N = signal N)."""
    outcome: Dict[str, Any] = {
        "status": status if status >= 0 else None,
        "signal": signal.Signals(-status).name if status < 0 else None,
        "signal_number": -status if status < 0 else None,
        "timed_out": timed_out,
        "client_lost": client_lost,
    }
    if stop_reason:
        outcome["stop_reason"] = stop_reason
    return outcome


# -- starting the command ----------------------------------------------------------


class Command:
    """The started command and the fds we hold to it (None where a stream is not ours)."""

    def __init__(
        self,
        child: "subprocess.Popen[bytes]",
        out_fd: Optional[int],
        err_fd: Optional[int],
        in_fd: Optional[int],
        master: Optional[int] = None,
    ) -> None:
        self.child = child
        self.out_fd = out_fd
        self.err_fd = err_fd
        self.in_fd = in_fd
        self.master = master  # a PTY master is both in_fd and out_fd

    def signal(self, signum: int) -> None:
        """To the whole process group (it has its own session): children of children too."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, signum)


def spawn(spec: Dict[str, Any], env: Dict[str, str], detached: bool) -> Command:
    if spec.get("pty"):
        return _spawn_pty(spec, env)
    if detached:
        return _spawn_to_log(spec, env)
    return _spawn_piped(spec, env)


def _spawn_pty(spec: Dict[str, Any], env: Dict[str, str]) -> Command:
    master, slave = os.openpty()
    rows, cols = spec.get("winsize") or (24, 80)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    try:
        child = subprocess.Popen(
            spec["argv"],
            cwd=spec["release"],
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_take_controlling_tty,
        )
    finally:
        os.close(slave)
    return Command(child, master, None, master, master)


def _spawn_to_log(spec: Dict[str, Any], env: Dict[str, str]) -> Command:
    """No client: both streams go to the run's log, through us."""
    child = subprocess.Popen(
        spec["argv"],
        cwd=spec["release"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_die_with_agent,
    )
    assert child.stdout and child.stderr
    return Command(child, child.stdout.fileno(), child.stderr.fileno(), None)


def _spawn_piped(spec: Dict[str, Any], env: Dict[str, str]) -> Command:
    child = subprocess.Popen(
        spec["argv"],
        cwd=spec["release"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=None,  # the channel's stdout itself: bulk output never passes through us
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_die_with_agent,
    )
    assert child.stdin and child.stderr
    return Command(child, None, child.stderr.fileno(), child.stdin.fileno())


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


# -- the fd roles ------------------------------------------------------------------


class StdinRelay:
    """Client stdin frames to the command's stdin, at most BUFFER_LIMIT held at a time.

    On a pipe, the client's end of stdin closes the pipe once all is written; on a PTY
    it is a ^D, as if typed, and the master stays open (it is the output too).
    """

    def __init__(self, fd: Optional[int], pty: bool) -> None:
        self.fd = fd
        self.pty = pty
        self.buf = bytearray()
        self.eof = False

    def full(self) -> bool:
        return len(self.buf) >= BUFFER_LIMIT

    def feed(self, data: bytes) -> None:
        if not self.eof:
            self.buf += data

    def end(self) -> None:
        self.eof = True
        if self.pty:
            self.buf += b"\x04"

    def wants_write(self) -> bool:
        return self.fd is not None and bool(self.buf or (self.eof and not self.pty))

    def on_writable(self) -> None:
        self._write()
        if self.fd is not None and self.eof and not self.buf and not self.pty:
            os.close(self.fd)
            self.fd = None

    def _write(self) -> None:
        if self.fd is None or not self.buf:
            return
        try:
            n = os.write(self.fd, self.buf)
            del self.buf[:n]
        except BlockingIOError:
            pass
        except OSError:  # the command closed its stdin: drop what it will never read
            self.buf.clear()
            self.eof = True


class CommandOutput:
    """The command's stderr or PTY output (both streams, detached): to the client or the log."""

    def __init__(self, command: Command, outbox: Outbox, log: Optional[TimestampedLog]) -> None:
        self.open = [fd for fd in (command.out_fd, command.err_fd) if fd is not None]
        self.err_fd = command.err_fd
        self.master = command.master
        self.outbox = outbox
        self.log = log

    def watch(self, registered: Dict[int, int]) -> None:
        for fd in self.open:
            registered[fd] = select.POLLIN

    def on_ready(self, fd: int, mask: int) -> None:
        if fd not in self.open or not mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
            return
        data = read_chunk(fd)
        if data:
            self._deliver(fd, data)
        elif data is not None:
            self.open.remove(fd)
            if fd != self.master:  # the master is closed last: it may still take stdin
                os.close(fd)

    def _deliver(self, fd: int, data: bytes) -> None:
        if self.log is not None:
            self.log.write("stderr" if fd == self.err_fd else "stdout", data)
        else:
            self.outbox.send(encode_frame(STDERR if fd == self.err_fd else STDOUT, data))


# -- the loop ----------------------------------------------------------------------


class Supervisor:
    """Starts the command under the agent's own signal handling, then runs the loop over it."""

    def __init__(
        self,
        spec: Dict[str, Any],
        env: Dict[str, str],
        outbox: Outbox,
        fd_in: int = 0,
        log: Optional[TimestampedLog] = None,
        early: bytes = b"",
        on_spawn: Optional[Callable[[bytes], None]] = None,
    ) -> None:
        self.spec = spec
        self.env = env
        self.outbox = outbox
        self.fd_in = fd_in
        self.log = log
        self.early = early  # client frames that arrived before the command started
        self.on_spawn = on_spawn or (lambda answer: None)  # tells a detaching parent

    def loop(self) -> Dict[str, Any]:
        signals: List[int] = []
        wake_r = self._catch_signals(signals)
        try:
            command = spawn(self.spec, self.env, self.outbox.detached)
        except OSError as exc:
            return self._not_started(exc)
        self.on_spawn(b"ok")
        return RunLoop(self, command, wake_r, signals).run()

    def _catch_signals(self, signals: List[int]) -> int:
        """Signals become bytes on a pipe the loop polls, so none is missed between rounds."""
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w, self.outbox.fd):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        for signum in AGENT_SIGNALS:
            signal.signal(signum, lambda got, frame: signals.append(got))
        return wake_r

    def _not_started(self, exc: OSError) -> Dict[str, Any]:
        """The shell's convention: 127 when there is no such command, 126 when it cannot run."""
        not_run = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
        message = "cannot run %s: %s" % (self.spec["argv"][0], exc.strerror)
        self.outbox.event("error", kind="spawn", message=message, status=not_run)
        self.on_spawn(b"spawn:%d:%s" % (not_run, message.encode()))
        return {"status": not_run, "signal": None, "error": "spawn"}


class RunLoop:
    """The poll loop over a started command: relays bytes both ways, keeps the timers."""

    def __init__(self, sup: Supervisor, command: Command, wake_r: int, signals: List[int]) -> None:
        self.spec = sup.spec
        self.outbox = sup.outbox
        self.fd_in = sup.fd_in
        self.detached = sup.outbox.detached
        self.command = command
        self.wake_r = wake_r
        self.signals = signals
        self.pty = bool(self.spec.get("pty"))
        self.reader = FrameReader()
        self.client_lost = False
        self.stdin = StdinRelay(command.in_fd, self.pty)
        self.output = CommandOutput(command, sup.outbox, sup.log)
        self.stop = Escalation(command.signal, float(self.spec.get("kill_after") or 10.0))
        self.frame_handlers: Dict[bytes, Callable[[bytes], None]] = {
            STDIN: self.stdin.feed,
            STDIN_EOF: lambda payload: self.stdin.end(),
            SIGNAL: self._on_signal_frame,
            WINCH: self._on_winch,
        }
        self.early = sup.early
        self.timeout = Timeout(None)  # both clocks start with the command, in run()
        self.beats = Heartbeats.from_spec(self.spec, 0.0)
        self.status: Optional[int] = None
        self.exited_at = 0.0
        self.poller = select.poll()

    def run(self) -> Dict[str, Any]:
        self.on_client_bytes(self.early)
        start = time.time()
        self.outbox.event("started", pid=self.command.child.pid, run_id=self.spec["run_id"])
        timeout = self.spec.get("timeout")
        self.timeout.deadline = start + float(timeout) if timeout else None
        self.beats.heard(time.time())
        if self.command.in_fd is not None:
            os.set_blocking(self.command.in_fd, False)
        while not self._round():
            pass
        return self._finish()

    def _round(self) -> bool:
        """One poll and what follows it; True when the run is over."""
        now = time.time()
        want_in = self._wants_input()
        registered = self._interest(now, want_in)
        ready = self._poll(registered, self._wait_ms(now, want_in))
        now = time.time()
        for fd, mask in ready:
            self._dispatch(fd, mask, now)
        self._after_io(now, want_in)
        return self._over(now)

    # -- what to watch ---------------------------------------------------------
    def _attached(self) -> bool:
        return not self.client_lost and not self.detached

    def _wants_input(self) -> bool:
        """Read the client only while its stdin has room (back-pressure) and it is there."""
        return not self.stdin.full() and self._attached()

    def _interest(self, now: float, want_in: bool) -> Dict[int, int]:
        registered: Dict[int, int] = {}
        if self._attached():
            # paused for back-pressure, still watch for hang-up (poll always reports it)
            registered[self.fd_in] = select.POLLIN if want_in else 0
        if not want_in:
            self.beats.heard(now)
        if len(self.outbox) < BUFFER_LIMIT:
            self.output.watch(registered)
        if self.outbox and not self.client_lost:
            _add(registered, self.outbox.fd, select.POLLOUT)
        if self.stdin.wants_write() and self.stdin.fd is not None:
            _add(registered, self.stdin.fd, select.POLLOUT)
        registered[self.wake_r] = select.POLLIN
        return registered

    def _wait_ms(self, now: float, want_in: bool) -> int:
        exited = self.status is not None
        return wait_ms(
            now,
            [
                now + self.beats.every,
                self.timeout.timer(),
                self.stop.kill_at,
                self.exited_at + DRAIN_AFTER_EXIT if exited else None,
                self.beats.silence_timer(now) if want_in else None,
            ],
        )

    def _poll(self, registered: Dict[int, int], timeout_ms: int) -> List[Tuple[int, int]]:
        for fd, mask in registered.items():
            self.poller.register(fd, mask)
        try:
            ready = self.poller.poll(timeout_ms)
        except InterruptedError:
            ready = []
        for fd in registered:
            self.poller.unregister(fd)
        return ready

    # -- ready fds, by role ----------------------------------------------------
    def _dispatch(self, fd: int, mask: int, now: float) -> None:
        if fd == self.wake_r:
            drain(fd)
        elif fd == self.fd_in:
            self._on_client_input(mask, now)
        elif fd == self.outbox.fd:
            self._on_client_writable(now)
        else:
            # a PTY master is both the command's input and its output: check both
            if fd == self.stdin.fd and mask & (select.POLLOUT | select.POLLERR):
                self.stdin.on_writable()
            self.output.on_ready(fd, mask)

    def _on_client_input(self, mask: int, now: float) -> None:
        if mask & select.POLLIN:
            data = read_chunk(self.fd_in)
        else:
            data = b"" if mask & (select.POLLHUP | select.POLLERR) else None
        if data:
            self.beats.heard(now)
            self.on_client_bytes(data)
        elif data is not None:
            self.lose_client("stdin closed")

    def _on_client_writable(self, now: float) -> None:
        try:
            if self.outbox.write_some():
                self.beats.wrote(now)
        except OSError:
            self.lose_client("stdout closed")

    def on_client_bytes(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except ValueError:
            self.lose_client("garbled frame")
            return
        for kind, payload in frames:
            handler = self.frame_handlers.get(kind)
            if handler is not None:  # heartbeats need nothing beyond being heard
                handler(payload)

    def _on_signal_frame(self, payload: bytes) -> None:
        name = payload.decode("ascii", "replace")
        signum = CLIENT_SIGNALS.get(name)
        if signum is not None:
            self.stop.begin("client sent SIG" + name, signum)

    def _on_winch(self, payload: bytes) -> None:
        if self.command.master is None:
            return
        rows, cols = json.loads(payload.decode())
        winsize = struct.pack("HHHH", int(rows), int(cols), 0, 0)
        fcntl.ioctl(self.command.master, termios.TIOCSWINSZ, winsize)

    # -- after the poll: signals, exit, timers -----------------------------------
    def _after_io(self, now: float, want_in: bool) -> None:
        while self.signals:
            got = self.signals.pop(0)
            if got != signal.SIGCHLD:
                # the agent itself was told to stop (sshd hang-up, kill): stop the command
                self.stop.begin("agent got signal %d" % got, got)
        self._reap(now)
        if want_in and self.beats.silent(now):
            self.lose_client("no heartbeat for %.0fs" % self.beats.timeout)
        if self.timeout.expire(now, running=self.status is None):
            self.stop.begin("timeout", signal.SIGTERM)
        self.stop.escalate(now)
        if not self.outbox and self.beats.beat_due(now) and not self.client_lost:
            self.outbox.send(encode_frame(ALIVE))

    def _reap(self, now: float) -> None:
        if self.status is None:
            self.status = self.command.child.poll()
            if self.status is not None:
                self.exited_at = now
                self.command.signal(signal.SIGTERM)  # leftover children of a finished one-off

    def _over(self, now: float) -> bool:
        """Exited, and its output drained (or DRAIN_AFTER_EXIT spent on its children's)."""
        if self.status is None:
            return False
        return not self.output.open or now - self.exited_at >= DRAIN_AFTER_EXIT

    def lose_client(self, why: str) -> None:
        """The client is gone: nothing more to send it, and the command is stopped."""
        if self.client_lost:
            return
        self.client_lost = True
        self.outbox.clear()
        if self.pty:
            self.command.signal(signal.SIGHUP)
        self.stop.begin("client lost: " + why, signal.SIGTERM)

    def _finish(self) -> Dict[str, Any]:
        self.command.signal(signal.SIGKILL)
        for leftover in {*self.output.open, self.stdin.fd, self.command.master}:
            if leftover is not None:
                with suppress(OSError):
                    os.close(leftover)
        signal.set_wakeup_fd(-1)
        os.set_blocking(self.outbox.fd, True)
        assert self.status is not None
        return describe_exit(
            self.status, self.timeout.timed_out, self.client_lost, self.stop.reason
        )


def _add(registered: Dict[int, int], fd: int, mask: int) -> None:
    registered[fd] = registered.get(fd, 0) | mask
