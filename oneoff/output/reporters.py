"""Everything oneoff writes to the terminal goes through a Reporter.

Three reporters: raw passthrough for one host (byte for byte, unprefixed),
``[host]``-prefixed whole lines for several, and JSON Lines events for scripts.
The session calls them from its own thread per host, so they lock around writes.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

from oneoff.durations import format_duration
from oneoff.errors import DriftRefused, NotStarted

if TYPE_CHECKING:
    from oneoff.plan.probe import ResolvedRelease
    from oneoff.values import HostResult, RunSpec

Stream = Literal["stdout", "stderr"]
PROGRESS_MIN_HOSTS = 8  # a progress bar only for fan-outs longer than a handful of hosts


class Reporter(Protocol):
    def started(self, host: str, release: ResolvedRelease, spec: RunSpec) -> None: ...
    def output(self, host: str, stream: Stream, data: bytes) -> None: ...
    def notice(self, host: str, message: str) -> None: ...
    def finished(self, result: HostResult) -> None: ...
    def summary(self, results: Sequence[HostResult], status: int) -> None: ...


def make_reporter(
    terminal: Terminal,
    hosts: Sequence[str],
    *,
    as_json: bool = False,
    quiet: bool = False,
    verbose: bool = False,
) -> RawReporter | PrefixReporter | JsonReporter:
    """Raw for one host, prefixed lines for several, JSON Lines when asked."""
    if as_json:
        return JsonReporter(terminal)
    if len(hosts) == 1:
        return RawReporter(terminal, quiet=quiet, verbose=verbose)
    progress = len(hosts) > PROGRESS_MIN_HOSTS and terminal.is_tty("stderr") and not quiet
    return PrefixReporter(terminal, hosts, quiet=quiet, progress=progress, verbose=verbose)


def describe_start(host: str, release: ResolvedRelease, spec: RunSpec) -> str:
    """What -v says before a run: where, which release, which interpreter, what command."""
    revision = f" ({release.revision[:12]})" if release.revision else ""
    extras = [f"lock {spec.lock}"] if spec.lock else []
    if spec.timeout:
        extras.append(f"timeout {format_duration(spec.timeout)}")
    tail = f" [{', '.join(extras)}]" if extras else ""
    return (
        f"{host}: release {release.release_id}{revision} at {release.path}, "
        f"{release.python}; run {spec.run_id}: {spec.display}{tail}"
    )


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write less than asked on pipes)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Terminal:
    """The process's streams, injectable for tests (httpie's Environment)."""

    def __init__(self, stdout: IO[bytes] | None = None, stderr: IO[bytes] | None = None) -> None:
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.stderr = stderr if stderr is not None else sys.stderr.buffer

    def write(self, stream: Stream, data: bytes) -> None:
        target = self.stdout if stream == "stdout" else self.stderr
        try:
            fd = target.fileno()
        except (OSError, ValueError, AttributeError):
            target.write(data)
            target.flush()
            return
        target.flush()
        write_all(fd, data)

    def message(self, text: str) -> None:
        self.write("stderr", f"oneoff: {text}\n".encode())

    def is_tty(self, stream: Stream) -> bool:
        target = self.stdout if stream == "stdout" else self.stderr
        try:
            return os.isatty(target.fileno())
        except (OSError, ValueError, AttributeError):
            return False


class RawReporter:
    """One host: the command's bytes pass through unchanged."""

    def __init__(self, terminal: Terminal, *, quiet: bool = False, verbose: bool = False) -> None:
        self.terminal = terminal
        self.quiet = quiet
        self.verbose = verbose and not quiet

    def started(self, host: str, release: ResolvedRelease, spec: RunSpec) -> None:
        if self.verbose:
            self.terminal.message(describe_start(host, release, spec))

    def output(self, host: str, stream: Stream, data: bytes) -> None:
        self.terminal.write(stream, data)

    def notice(self, host: str, message: str) -> None:
        if not self.quiet:
            self.terminal.message(f"{host}: {message}")

    def finished(self, result: HostResult) -> None:
        pass

    def summary(self, results: Sequence[HostResult], status: int) -> None:
        for result in results:
            if result.error is not None and not isinstance(result.error, DriftRefused | NotStarted):
                self.terminal.message(str(result.error))


class PrefixReporter:
    """Several hosts: whole lines, each prefixed ``[host]``, never two hosts in one line.

    On a terminal, long fan-outs get a progress line on stderr, cleared before each
    output line and redrawn after it; piped output never sees it.
    """

    def __init__(
        self,
        terminal: Terminal,
        hosts: Sequence[str],
        *,
        quiet: bool = False,
        progress: bool = False,
        verbose: bool = False,
    ) -> None:
        self.terminal = terminal
        self.quiet = quiet
        self.verbose = verbose and not quiet
        width = max((len(h) for h in hosts), default=0)
        colour = terminal.is_tty("stdout") and "NO_COLOR" not in os.environ
        self.prefix = {h: _prefix(h, width, i if colour else None) for i, h in enumerate(hosts)}
        self.partial: dict[tuple[str, Stream], bytes] = {}
        self.lock = threading.Lock()
        self.total = len(hosts)
        self.done = 0
        self.failed = 0
        self.progress = progress
        self.bar_shown = False

    def started(self, host: str, release: ResolvedRelease, spec: RunSpec) -> None:
        if self.verbose:
            self._write("stderr", f"oneoff: {describe_start(host, release, spec)}\n".encode())

    def _write(self, stream: Stream, block: bytes) -> None:
        """Write under the lock, keeping the progress line out of the way."""
        with self.lock:
            if self.bar_shown:
                self.terminal.write("stderr", b"\r\x1b[K")
                self.bar_shown = False
            self.terminal.write(stream, block)
            self._draw_bar()

    def _draw_bar(self) -> None:
        if not self.progress or self.done >= self.total:
            return
        width = 30
        filled = width * self.done // max(1, self.total)
        bar = "=" * filled + ">" + " " * (width - filled - 1)
        failed = f", {self.failed} failed" if self.failed else ""
        line = f"[{bar}] {self.done}/{self.total} hosts done{failed}"
        self.terminal.write("stderr", ("\r\x1b[K" + line).encode())
        self.bar_shown = True

    def output(self, host: str, stream: Stream, data: bytes) -> None:
        key = (host, stream)
        text = self.partial.pop(key, b"") + data
        lines, _, rest = text.rpartition(b"\n")
        if rest:
            self.partial[key] = rest
        if lines or text.endswith(b"\n"):
            prefix = self.prefix.get(host, f"[{host}] ".encode())
            block = b"".join(prefix + line + b"\n" for line in (lines + b"\n").split(b"\n")[:-1])
            self._write(stream, block)

    def flush_partial(self, host: str) -> None:
        prefix = self.prefix.get(host, f"[{host}] ".encode())
        for stream in ("stdout", "stderr"):
            key: tuple[str, Stream] = (host, stream)
            rest = self.partial.pop(key, b"")
            if rest:
                self._write(key[1], prefix + rest + b"\n")

    def notice(self, host: str, message: str) -> None:
        if not self.quiet:
            self._write("stderr", f"oneoff: {host}: {message}\n".encode())

    def finished(self, result: HostResult) -> None:
        self.flush_partial(result.host)
        with self.lock:
            self.done += 1
            self.failed += 0 if result.ok else 1
        if result.error is not None and not isinstance(result.error, DriftRefused | NotStarted):
            self._write("stderr", f"oneoff: {result.error}\n".encode())
        else:
            with self.lock:
                self._draw_bar()

    def summary(self, results: Sequence[HostResult], status: int) -> None:
        with self.lock:
            if self.bar_shown:
                self.terminal.write("stderr", b"\r\x1b[K")
                self.bar_shown = False
        if self.quiet or all(r.plan is not None for r in results):
            return
        from oneoff.client.fleet import summary_counts

        counts = summary_counts(results)
        said = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n)
        text = summary_table(results) + f"\n{len(results)} hosts: {said}\n"
        self.terminal.write("stderr", text.encode())


def _prefix(host: str, width: int, colour: int | None) -> bytes:
    label = f"[{host}]".ljust(width + 2)
    if colour is not None:
        label = f"\x1b[{31 + colour % 6}m{label}\x1b[0m"
    return (label + " ").encode()


class JsonReporter:
    """JSON Lines on stdout only: start, output, exit, then a summary from the CLI."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.lock = threading.Lock()

    def emit(self, record: dict[str, Any]) -> None:
        record.setdefault("time", round(time.time(), 3))
        line = json.dumps(record, sort_keys=True) + "\n"
        with self.lock:
            self.terminal.write("stdout", line.encode())

    def started(self, host: str, release: ResolvedRelease, spec: RunSpec) -> None:
        self.emit(
            {
                "event": "start",
                "host": host,
                "run_id": spec.run_id,
                "release": release.release_id,
                "revision": release.revision,
                "command": spec.display,
            }
        )

    def output(self, host: str, stream: Stream, data: bytes) -> None:
        record: dict[str, Any] = {"event": "output", "host": host, "stream": stream}
        try:
            record["text"] = data.decode("utf-8")
        except UnicodeDecodeError:
            record["base64"] = base64.b64encode(data).decode()
        self.emit(record)

    def notice(self, host: str, message: str) -> None:
        # stdout carries only start/output/exit/summary events; notices are for people
        with self.lock:
            self.terminal.message(f"{host}: {message}")

    def finished(self, result: HostResult) -> None:
        self.emit(result_record(result))

    def summary(self, results: Sequence[HostResult], status: int) -> None:
        from oneoff.client.fleet import summary_counts

        self.emit(
            {
                "event": "summary",
                "exit_code": status,
                "counts": summary_counts(results),
                "hosts": [result_record(r) for r in results],
            }
        )


def result_record(result: HostResult) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event": "exit",
        "host": result.host,
        "run_id": result.run_id,
        "release": result.release_id,
        "status": result.status,
        "signal": result.signal,
        "timed_out": result.timed_out,
        "exit_code": result.exit_code,
        "duration": round(result.duration, 3),
        "error": str(result.error) if result.error else None,
    }
    if result.detached:
        record["detached"] = True
    if result.plan is not None:
        record["plan"] = dict(result.plan)
    return record


def summary_table(results: Sequence[HostResult]) -> str:
    """Host, release, outcome, duration: one aligned row per host."""
    rows = [("HOST", "RELEASE", "RESULT", "DURATION")]
    for r in results:
        rows.append((r.host, r.release_id or "-", r.describe(), format_duration(r.duration)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
