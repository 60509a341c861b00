"""The client half of one run on one host: probe, pin, hand over to the agent, stream.

One exec on one connection does it all: the probe script resolves the release and then
execs the agent; meanwhile we already send the agent's source, read the probe's answer,
build the RunSpec from it, and send that. From then on the channel carries frames both
ways (see ``oneoff.remote``): :class:`~oneoff.client.channel.AgentChannel` turns them
into events and :class:`~oneoff.client.reducer.RunReducer` into the result. Heartbeats
flow both ways, so a dead link is noticed on both ends without sshd's help.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING

from oneoff import remote
from oneoff.client.channel import AgentChannel
from oneoff.client.escape import EscapeFilter
from oneoff.client.events import AgentEvent, Output
from oneoff.client.reducer import Ending, RunReducer, lost
from oneoff.errors import AgentError, ConnectionLost, NotStarted, OneoffError
from oneoff.outcome import HostResult
from oneoff.plan.probe import (
    ProbeRequest,
    ResolvedRelease,
    parse_probe,
    probe_script,
    split_probe_output,
)
from oneoff.remote import protocol as proto
from oneoff.values import RunSpec

if TYPE_CHECKING:
    from oneoff.client.events import Reporter
    from oneoff.client.journal import LocalJournal
    from oneoff.transport.base import RemoteProcess, Transport

READ_SIZE = 1 << 18
PROBE_TIMEOUT = 120.0
TICK = 1.0  # how often the reader looks up from the channel (abort flag, silence clock)
STDIN_CHUNK = 1 << 18  # forwarded stdin per frame (well under the agent's MAX_FRAME)


def agent_source() -> bytes:
    """The program the host runs (all stdlib only), read and framed once per process."""
    return remote.source()


def collect(transport: Transport, script: str, timeout: float) -> bytes:
    """Run a read-only sh *script* on a connected transport; its whole stdout (audit, ps)."""
    process = transport.start(script)
    try:
        chunks = []
        while chunk := _recv(process, timeout, transport.host):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        process.close()


def probe_only(transport: Transport, request: ProbeRequest, timeout: float) -> ResolvedRelease:
    """Resolve the release without running anything (releases, tasks, drift checks)."""
    process = transport.start(probe_script(request, "probe"))
    try:
        return _read_probe(process, timeout, transport.host)[0]
    finally:
        process.close()


def _read_probe(process: RemoteProcess, timeout: float, host: str) -> tuple[ResolvedRelease, bytes]:
    """The probe's answer, and whatever of the command's stdout came right after it."""
    buffer = b""
    while (split := split_probe_output(buffer)) is None:
        chunk = _recv(process, timeout, host)
        if not chunk:
            raise _script_died(host, process)
        buffer += chunk
    return parse_probe(host, split[0]), split[1]


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


@dataclass
class _Attempt:
    """What is known so far of one run, for the result when it fails part way."""

    host: str
    started: float
    release: ResolvedRelease | None = None
    spec: RunSpec | None = None

    def failed(self, error: OneoffError) -> HostResult:
        return HostResult(
            host=self.host,
            display=self.spec.display if self.spec else "",
            run_id=self.spec.run_id if self.spec else None,
            release_id=self.release.release_id if self.release else None,
            revision=self.release.revision if self.release else None,
            error=error,
            duration=time.monotonic() - self.started,
        )


class Session:
    """Runs one spec on one host and reports through *reporter*.

    ``interrupt()`` may be called from a signal handler: it only queues; the
    heartbeat thread does the sending, so no lock is ever taken in the handler.
    """

    def __init__(
        self,
        host: str,
        connect: Callable[[], Transport],
        reporter: Reporter,
        *,
        stdin: IO[bytes] | None = None,
        stdin_is_terminal: bool = False,
        alive_interval: float,
        alive_count_max: int,
        journal: LocalJournal | None = None,
    ) -> None:
        self.host = host
        self.connect = connect
        self.reporter = reporter
        self.stdin = stdin
        self.stdin_is_terminal = stdin_is_terminal
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
        self._writing = False  # the stdout thread is blocked writing to our stdout
        self.output_closed = False  # our stdout's reader went away

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
        attempt = _Attempt(self.host, time.monotonic())
        self._reducer = RunReducer(self.host)
        try:
            result = self._run(attempt, request, plan, on_release)
        except (OSError, EOFError) as exc:  # the channel or socket went away under us
            result = attempt.failed(self._lost(f"connection lost: {exc}"))
        except OneoffError as exc:
            result = attempt.failed(exc)
        except ValueError as exc:  # a garbled frame or event: the host's failure, not ours
            result = attempt.failed(
                self._lost(f"the agent sent garbled data ({exc})")
                if self._reducer.started
                else AgentError(
                    f"the agent sent garbled data ({exc})", host=self.host, hint="run with --debug"
                )
            )
        if self.journal is not None:
            self.journal.end(result)
        self.reporter.finished(result)
        return result

    def _run(
        self,
        attempt: _Attempt,
        request: ProbeRequest,
        plan: Callable[[ResolvedRelease], RunSpec],
        on_release: Callable[[ResolvedRelease], None] | None,
    ) -> HostResult:
        transport = self.connect()
        process = transport.start(probe_script(request, "run", proto.BOOT))
        try:
            process.send(proto.encode_frame(b"A", agent_source()))
            release, early = _read_probe(process, self.probe_timeout, self.host)
            attempt.release = release
            if on_release is not None:
                on_release(release)
            spec = plan(release)
            key = transport.key_fingerprint()
            if key:
                spec = replace(spec, operator={**spec.operator, "key": key})
            attempt.spec = spec
            if self._interrupts:  # Ctrl-C during connect, login or probe: nothing starts
                raise NotStarted("interrupted before the command started", host=self.host)
            payload = json.dumps(spec.to_agent(proto.PROTOCOL_VERSION)).encode()
            process.send(proto.encode_frame(proto.SPEC, payload))
            self._announce(release, spec)
            return self._stream(process, spec, release, early, attempt.started)
        finally:
            self._done.set()
            self._control.put(None)
            process.close()

    def _announce(self, release: ResolvedRelease, spec: RunSpec) -> None:
        if spec.task is not None:
            self._warn_task_files(release, spec)
        self.reporter.started(self.host, release, spec)
        if self.journal is not None:
            self.journal.start(spec, release)

    def _warn_task_files(self, release: ResolvedRelease, spec: RunSpec) -> None:
        """A broken release task file may hide the definition that should have won."""
        from oneoff.plan.tasks import release_tasks

        for problem in release_tasks(release).problems:
            self.reporter.notice(
                self.host,
                f"{problem}; running {spec.task} from {spec.task_source}: "
                "check it is the one meant",
            )

    def _lost(self, why: str, hint: str | None = None) -> ConnectionLost:
        """A lost link: a run whose command had started is ``lost``, not ``not started``."""
        if self._reducer.started:
            return lost(self.host, why)
        return ConnectionLost(why, host=self.host, hint=hint)

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
            self._pass_stdout(early)
        stdout_done = self._start_threads(process, spec)
        channel = AgentChannel()
        self._read_agent(process, channel)
        # the agent has exited: the rest of stdout is in flight or already here
        while not stdout_done.wait(TICK):
            if not self._writing and self._silent_too_long(self._last_heard):
                raise self._lost("connection lost while reading output")
        ran = HostResult(
            host=self.host,
            display=spec.display,
            run_id=spec.run_id,
            release_id=release.release_id,
            revision=release.revision,
            duration=time.monotonic() - started,
        )
        ending = Ending(
            synced=channel.synced,
            before_sync=channel.before_sync,
            exit_status=None if channel.synced else process.exit_status(),
            interrupted=self._interrupts > 0,
            output_closed=self.output_closed,
        )
        return self._reducer.verdict(ran, ending)

    def _start_threads(self, process: RemoteProcess, spec: RunSpec) -> threading.Event:
        stdout_done = threading.Event()
        threads = [
            threading.Thread(target=self._control_loop, args=(process,), daemon=True),
            threading.Thread(target=self._stdout_loop, args=(process, stdout_done), daemon=True),
        ]
        if self.stdin is not None and spec.mode == "run":
            escape = spec.pty and self.stdin_is_terminal  # `~.` only from a raw terminal
            threads.append(
                threading.Thread(target=self._stdin_loop, args=(process, escape), daemon=True)
            )
        else:
            # a fast command may be done and its channel closed already: reading will tell
            with contextlib.suppress(OSError, EOFError):
                process.send(proto.encode_frame(proto.STDIN_EOF))
        for thread in threads:
            thread.start()
        return stdout_done

    def _silent_too_long(self, since: float) -> bool:
        return time.monotonic() - since > self.silence_limit

    def _read_agent(self, process: RemoteProcess, channel: AgentChannel) -> None:
        """Read the agent's frames until it exits (EOF), or until its silence says it is gone."""
        self._last_heard = time.monotonic()
        while True:
            received = self._recv_agent(process)
            if self._aborted:
                raise ConnectionLost(
                    "session closed with ~.", host=self.host, hint="the agent stops the command"
                )
            if received is None:
                if self._writing:  # back-pressure from our own reader, not silence
                    self._last_heard = time.monotonic()
                elif self._silent_too_long(self._last_heard):
                    if self._reducer.settled:
                        return
                    raise self._lost(
                        f"connection lost (nothing heard for {self.silence_limit:g}s)",
                        hint="the agent on the host stops the command when our heartbeats stop",
                    )
                continue
            if not received:
                return  # EOF: the agent has exited
            self._last_heard = time.monotonic()
            for event in channel.feed(received):
                self._dispatch(event)

    def _recv_agent(self, process: RemoteProcess) -> bytes | None:
        try:
            return process.recv_stderr(READ_SIZE, TICK)
        except TimeoutError:
            return None
        except OSError as exc:
            raise self._lost(f"connection lost: {exc}") from exc

    def _dispatch(self, event: Output | AgentEvent) -> None:
        if isinstance(event, Output):
            self.reporter.output(self.host, event.stream, event.data)
            return
        notice = self._reducer.apply(event)
        if notice is not None:
            self.reporter.notice(self.host, notice)

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
                if not self.output_closed:
                    self._pass_stdout(chunk)
        except OSError:
            pass
        finally:
            done.set()

    def _pass_stdout(self, chunk: bytes) -> None:
        self._writing = True
        try:
            self.reporter.output(self.host, "stdout", chunk)
        except BrokenPipeError:
            # our reader went away (`oneoff ... | head`): stop the command, as SIGPIPE
            # would stop it locally, instead of stalling the channel
            self.output_closed = True
            self.terminate()
        finally:
            self._writing = False

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

    def _stdin_loop(self, process: RemoteProcess, escape_active: bool) -> None:
        """Forward our stdin in large frames, then EOF (``oneoff ... < dump.json``)."""
        assert self.stdin is not None
        # os.read on the descriptor, not the buffered object: a daemon thread blocked inside
        # BufferedReader holds its lock, and the interpreter aborts at exit on that lock.
        fd = self.stdin.fileno()
        escape = EscapeFilter() if escape_active else None
        try:
            while not self._done.is_set():
                chunk = os.read(fd, STDIN_CHUNK)
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
