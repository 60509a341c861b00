"""The client half of one run on one host: probe, pin, hand over to the agent, stream.

One exec on one connection does it all: the probe script resolves the release
and then execs the agent; meanwhile we already send the agent's source, read the
probe's answer, build the RunSpec from it, and send that. From then on the
channel carries frames both ways (see ``oneoff.remote.agent``). Heartbeats flow
both ways too, so a dead link is noticed on both ends without sshd's help.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from oneoff.errors import (
    AgentError,
    CannotRun,
    ConnectError,
    ConnectionLost,
    HostKeyError,
    LockBusy,
    OneoffError,
    ReleaseError,
)
from oneoff.output.terminal import EscapeFilter
from oneoff.plan.probe import (
    ProbeRequest,
    ResolvedRelease,
    parse_probe,
    probe_script,
    split_probe_output,
)
from oneoff.remote import protocol as proto
from oneoff.values import HostResult, RunSpec

if TYPE_CHECKING:
    from oneoff.client.journal import LocalJournal
    from oneoff.output.reporters import Reporter
    from oneoff.transport.base import RemoteProcess, Transport

READ_SIZE = 1 << 18
PROBE_TIMEOUT = 120.0
TICK = 1.0  # how often the reader looks up from the channel (abort flag, silence clock)
STDIN_CHUNK = 1 << 18  # forwarded stdin per frame (well under the agent's MAX_FRAME)
_AGENT_SOURCE: bytes | None = None


def agent_source() -> bytes:
    """The program the host runs: env-file parser, protocol, agent (all stdlib only)."""
    global _AGENT_SOURCE
    if _AGENT_SOURCE is None:
        here = Path(proto.__file__).parent
        parts = [(here / name).read_text() for name in ("envfile.py", "protocol.py", "agent.py")]
        _AGENT_SOURCE = "\n".join(parts).encode()
    return _AGENT_SOURCE


def connect_with_retries(transport: Transport, retries: int) -> None:
    """Retry connection errors only (refused, timed out, unreachable) with backoff.

    Never a host-key or authentication failure, and never once a command has started:
    that is the caller's to decide, and retrying it could run a migration twice.
    """
    delay = 1.0
    for attempt in range(retries + 1):
        try:
            transport.connect()
            return
        except HostKeyError:
            raise
        except ConnectError as exc:
            if attempt == retries or "authentication" in exc.message or "passphrase" in exc.message:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def collect(transport: Transport, script: str, timeout: float, retries: int = 0) -> bytes:
    """Run a read-only sh *script* and return its whole stdout (audit, ps, logs)."""
    connect_with_retries(transport, retries)
    process = transport.start(script)
    try:
        chunks = []
        while chunk := _recv(process, timeout, transport.host):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        process.close()


def probe_only(
    transport: Transport, request: ProbeRequest, timeout: float, retries: int = 0
) -> ResolvedRelease:
    """Resolve the release without running anything (releases, tasks, drift checks)."""
    connect_with_retries(transport, retries)
    process = transport.start(probe_script(request, "probe"))
    try:
        buffer = b""
        while (split := split_probe_output(buffer)) is None:
            chunk = _recv(process, timeout, transport.host)
            if not chunk:
                raise _script_died(transport.host, process)
            buffer += chunk
        return parse_probe(transport.host, split[0])
    finally:
        process.close()


def _recv(process: RemoteProcess, timeout: float, host: str) -> bytes:
    try:
        return process.recv(READ_SIZE, timeout if math.isfinite(timeout) else None)
    except TimeoutError:
        raise ConnectionLost(f"no answer from the host for {timeout:g}s", host=host) from None
    except OSError as exc:
        raise ConnectionLost(f"connection lost: {exc}", host=host) from exc


def _script_died(host: str, process: RemoteProcess) -> AgentError:
    tail = process.stderr_tail().decode("utf-8", "replace").strip()
    status = process.exit_status()
    detail = tail.splitlines()[-1] if tail else f"exit status {status}"
    return AgentError(
        f"the remote script ended early: {detail}", host=host, hint="run with --debug"
    )


class Session:
    """Runs one spec on one host and reports through *reporter*.

    ``interrupt()`` may be called from a signal handler: it only queues; the
    heartbeat thread does the sending, so no lock is ever taken in the handler.
    """

    def __init__(
        self,
        transport: Transport,
        reporter: Reporter,
        *,
        stdin: IO[bytes] | None = None,
        alive_interval: float = 10.0,
        alive_count_max: int = 3,
        retries: int = 0,
        journal: LocalJournal | None = None,
        on_spec: Callable[[RunSpec], bool] | None = None,
    ) -> None:
        self.transport = transport
        self.host = transport.host
        self.reporter = reporter
        self.stdin = stdin
        self.retries = retries
        self.journal = journal
        self.alive_interval = alive_interval
        # alive_interval 0 turns keepalives off: only a closed connection counts as lost
        self.silence_limit = alive_interval * alive_count_max if alive_interval > 0 else math.inf
        # Before the agent runs there are no heartbeats, and a host's login (its rc files, a
        # crowd of logins at once) may be slow: wait longer for the probe than for silence.
        self.probe_timeout = max(PROBE_TIMEOUT, self.silence_limit)
        self._control: queue.Queue[bytes | None] = queue.Queue()
        self._interrupts = 0
        self._done = threading.Event()
        self._aborted = False
        self.output_closed = False  # our stdout's reader went away
        self.on_spec = on_spec
        self.escape = False  # the ~. escape, for a PTY run driven from our terminal

    # -- called from other threads / signal handlers --------------------------------
    def interrupt(self) -> None:
        """First call: SIGINT to the remote command; any later call: SIGKILL."""
        self._interrupts += 1
        name = b"INT" if self._interrupts == 1 else b"KILL"
        self._control.put(proto.encode_frame(proto.SIGNAL, name))

    def terminate(self) -> None:
        """Ask the remote command to stop (SIGTERM), e.g. when oneoff itself is terminated."""
        self._interrupts += 1
        self._control.put(proto.encode_frame(proto.SIGNAL, b"TERM"))

    def resize(self, rows: int, cols: int) -> None:
        self._control.put(proto.encode_frame(proto.WINCH, json.dumps([rows, cols]).encode()))

    # -- the run --------------------------------------------------------------------
    def run(
        self,
        request: ProbeRequest,
        plan: Callable[[ResolvedRelease], RunSpec],
        *,
        on_release: Callable[[ResolvedRelease], None] | None = None,
    ) -> HostResult:
        """Never raises for a host-level failure: it comes back as ``HostResult.error``."""
        started = time.monotonic()
        release: ResolvedRelease | None = None
        spec: RunSpec | None = None
        try:
            connect_with_retries(self.transport, self.retries)
            process = self.transport.start(probe_script(request, "run", proto.BOOT))
            try:
                process.send(proto.encode_frame(b"A", agent_source()))
                buffer = b""
                while (split := split_probe_output(buffer)) is None:
                    chunk = _recv(process, self.probe_timeout, self.host)
                    if not chunk:
                        raise _script_died(self.host, process)
                    buffer += chunk
                release = parse_probe(self.host, split[0])
                if on_release is not None:
                    on_release(release)
                spec = plan(release)
                key = self.transport.key_fingerprint()
                if key:
                    spec = replace(spec, operator={**spec.operator, "key": key})
                if self.on_spec is not None:
                    self.escape = self.on_spec(spec)
                payload = json.dumps(spec.to_agent(proto.PROTOCOL_VERSION)).encode()
                process.send(proto.encode_frame(proto.SPEC, payload))
                if spec.task is not None:
                    self._warn_task_files(release, spec)
                self.reporter.started(self.host, release, spec)
                if self.journal is not None:
                    self.journal.start(spec, release)
                result = self._stream(process, spec, release, split[1], started)
            finally:
                self._done.set()
                self._control.put(None)
                process.close()
        except (OSError, EOFError) as exc:  # the channel or socket went away under us
            error = ConnectionLost(f"connection lost: {exc}", host=self.host)
            result = HostResult(
                host=self.host,
                display=spec.display if spec else "",
                run_id=spec.run_id if spec else None,
                release_id=release.release_id if release else None,
                error=error,
                duration=time.monotonic() - started,
            )
        except OneoffError as exc:
            result = HostResult(
                host=self.host,
                display=spec.display if spec else "",
                run_id=spec.run_id if spec else None,
                release_id=release.release_id if release else None,
                revision=release.revision if release else None,
                error=exc,
                duration=time.monotonic() - started,
            )
        finally:
            self.transport.close()
        if self.journal is not None:
            self.journal.end(result)
        self.reporter.finished(result)
        return result

    def _warn_task_files(self, release: ResolvedRelease, spec: RunSpec) -> None:
        """A broken release task file may hide the definition that should have won."""
        from oneoff.plan.tasks import release_tasks

        for problem in release_tasks(release).problems:
            self.reporter.notice(
                self.host,
                f"{problem}; running {spec.task} from {spec.task_source}: "
                "check it is the one meant",
            )

    def _stream(
        self,
        process: RemoteProcess,
        spec: RunSpec,
        release: ResolvedRelease,
        early: bytes,
        started: float,
    ) -> HostResult:
        """Command stdout arrives raw on the channel's stdout (its own thread); the agent's
        frames (stderr, events, heartbeats) on the channel's stderr (this thread)."""
        if early:
            self.reporter.output(self.host, "stdout", early)
        stdout_done = threading.Event()
        threads = [
            threading.Thread(target=self._control_loop, args=(process,), daemon=True),
            threading.Thread(target=self._stdout_loop, args=(process, stdout_done), daemon=True),
        ]
        if self.stdin is not None and spec.mode == "run":
            threads.append(threading.Thread(target=self._stdin_loop, args=(process,), daemon=True))
        else:
            # a fast command may be done and its channel closed already: reading will tell
            with contextlib.suppress(OSError, EOFError):
                process.send(proto.encode_frame(proto.STDIN_EOF))
        for thread in threads:
            thread.start()
        reader = proto.FrameReader()
        outcome: dict[str, Any] | None = None
        failure: OneoffError | None = None
        plan: dict[str, Any] | None = None
        before_sync = b""  # what a shell printed on stderr before the agent started
        synced = False
        silent_since = time.monotonic()
        while True:
            received: bytes | None
            try:
                received = process.recv_stderr(READ_SIZE, TICK)
            except TimeoutError:
                received = None
            except OSError as exc:
                raise ConnectionLost(f"connection lost: {exc}", host=self.host) from exc
            if self._aborted:
                raise ConnectionLost(
                    "session closed with ~.", host=self.host, hint="the agent stops the command"
                )
            if received is None:
                if time.monotonic() - silent_since > self.silence_limit:
                    if outcome is not None or plan is not None:
                        break
                    raise ConnectionLost(
                        f"connection lost (nothing heard for {self.silence_limit:g}s)",
                        host=self.host,
                        hint="the agent on the host stops the command when our heartbeats stop",
                    )
                continue
            if not received:
                break  # EOF: the agent has exited
            silent_since = time.monotonic()
            data = received
            if not synced:
                before_sync += received
                mark = before_sync.find(proto.SYNC)
                if mark < 0:
                    before_sync = before_sync[-8192:]
                    continue
                synced = True
                data = before_sync[mark + len(proto.SYNC) :]
                before_sync = before_sync[:mark]
            for kind, payload in reader.feed(data):
                if kind == proto.STDERR:
                    self.reporter.output(self.host, "stderr", payload)
                elif kind == proto.STDOUT:  # a PTY run: the terminal's output
                    self.reporter.output(self.host, "stdout", payload)
                elif kind == proto.EVENT:
                    event = json.loads(payload)
                    name = event.pop("event")
                    if name == "exit":
                        outcome = event
                    elif name == "detached":
                        outcome = {"status": 0, "detached": True}
                    elif name == "plan":
                        plan = event
                    elif name == "lock_wait":
                        self.reporter.notice(self.host, _lock_message(event, waiting=True))
                    elif name == "lock_busy":
                        failure = LockBusy(
                            _lock_message(event, waiting=False),
                            host=self.host,
                            hint="wait for it, or pass --lock-wait DURATION",
                        )
                    elif name == "error":
                        failure = _agent_error(self.host, event)
        # the agent has exited: the rest of stdout is in flight or already here
        while not stdout_done.wait(TICK):
            if time.monotonic() - silent_since > self.silence_limit:
                raise ConnectionLost("connection lost while reading output", host=self.host)
        if not synced:
            text = before_sync.decode("utf-8", "replace").strip()
            detail = text.splitlines()[-1] if text else f"exit status {process.exit_status()}"
            raise AgentError(
                f"the agent did not start: {detail}", host=self.host, hint="run with --debug"
            )
        if failure is not None:
            raise failure
        ran = HostResult(
            host=self.host,
            display=spec.display,
            run_id=spec.run_id,
            release_id=release.release_id,
            revision=release.revision,
            duration=time.monotonic() - started,
        )
        if plan is not None:
            return replace(ran, status=0, plan=plan)
        if outcome is None:
            if self._interrupts:
                raise ConnectionLost(
                    "interrupted; the connection closed before the command ended", host=self.host
                )
            text = before_sync.decode("utf-8", "replace").strip()
            raise AgentError(
                "the agent ended without reporting an exit status"
                + (f": {text.splitlines()[-1]}" if text else ""),
                host=self.host,
                hint="run with --debug",
            )
        if outcome.get("client_lost"):
            raise ConnectionLost(
                "the agent lost contact with us and stopped the command", host=self.host
            )
        if self.output_closed:  # as a local pipeline reports a writer killed by SIGPIPE
            return replace(ran, signal="SIGPIPE", signal_number=int(signal.SIGPIPE))
        return replace(
            ran,
            status=outcome.get("status"),
            signal=outcome.get("signal"),
            signal_number=outcome.get("signal_number"),
            timed_out=bool(outcome.get("timed_out")),
            interrupted=self._interrupts > 0 and outcome.get("status") != 0,
            detached=bool(outcome.get("detached")),
        )

    def _stdout_loop(self, process: RemoteProcess, done: threading.Event) -> None:
        """Pass the command's stdout through as it comes, until EOF."""
        try:
            while not self._aborted:
                try:
                    chunk = process.recv(READ_SIZE, TICK)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                if self.output_closed:
                    continue  # keep the channel flowing until the command has stopped
                try:
                    self.reporter.output(self.host, "stdout", chunk)
                except BrokenPipeError:
                    # our reader went away (`oneoff ... | head`): stop the command, as
                    # SIGPIPE would stop it locally, instead of stalling the channel
                    self.output_closed = True
                    self.terminate()
        except OSError:
            pass
        finally:
            done.set()

    def _control_loop(self, process: RemoteProcess) -> None:
        """Heartbeats every alive_interval/2, and queued signals/resizes as they come."""
        heartbeat = proto.encode_frame(proto.HEARTBEAT)
        every = max(0.2, self.alive_interval / 2) if self.alive_interval > 0 else None
        while not self._done.is_set():
            try:
                frame = self._control.get(timeout=every)
            except queue.Empty:
                frame = heartbeat
            if frame is None:
                return
            try:
                process.send(frame)
            except (OSError, EOFError):
                return

    def _stdin_loop(self, process: RemoteProcess) -> None:
        """Forward our stdin in large frames, then EOF (``oneoff ... < dump.json``)."""
        assert self.stdin is not None
        # os.read on the descriptor, not the buffered object: a daemon thread blocked inside
        # BufferedReader holds its lock, and the interpreter aborts at exit on that lock.
        fd = self.stdin.fileno()

        def read(size: int) -> bytes:
            return os.read(fd, size)

        escape = EscapeFilter() if self.escape else None
        try:
            while not self._done.is_set():
                chunk = read(STDIN_CHUNK)
                if not chunk:
                    break
                if escape is not None:
                    chunk, hang_up = escape.feed(chunk)
                    if hang_up:
                        self._aborted = True
                        return
                process.send(proto.encode_frame(proto.STDIN, chunk))
            process.send(proto.encode_frame(proto.STDIN_EOF))
        except (OSError, ValueError, EOFError):
            return


def _lock_message(event: dict[str, Any], *, waiting: bool) -> str:
    holder = event.get("holder") or {}
    operator = holder.get("operator") or {}
    who = "@".join(filter(None, [operator.get("user"), operator.get("machine")])) or "unknown"
    details = (
        f"held by {who} since {holder.get('since', '?')}, run {holder.get('run_id', '?')}: "
        f"{holder.get('command', '?')}"
    )
    verb = "waiting for lock" if waiting else "lock"
    tail = "" if waiting else " is busy"
    return f"{verb} {event.get('lock')!r}{tail} ({details})"


def _agent_error(host: str, event: dict[str, Any]) -> OneoffError:
    kind = event.get("kind")
    message = str(event.get("message", "the agent failed"))
    if kind == "env_file":
        return ReleaseError(
            f"env file {message}", host=host, hint="fix that line; values are never shown"
        )
    if kind == "state_dir":
        hint = "fix its permissions or set state_dir"
        return ReleaseError(
            message,
            host=host,
            hint=hint + (" (a lock lives there)" if event.get("lock") else ", or pass --no-audit"),
        )
    if kind == "spawn":
        return _SpawnError(message, host=host, status=int(event.get("status", 127)))
    return AgentError(message, host=host)


class _SpawnError(CannotRun):
    """The command itself could not be started (not found: 127, not executable: 126)."""

    def __init__(self, message: str, *, host: str, status: int) -> None:
        super().__init__(message, host=host, hint="check the command and the venv's bin/")
        self.exit_status = status
