"""Everything oneoff writes to the terminal about a run goes through a Reporter.

Three reporters: raw passthrough for one host (byte for byte, unprefixed),
``[host]``-prefixed whole lines for several, and JSON Lines events for scripts.
The session calls them from its own thread per host, so they lock around writes.

A reporter is the terminal's side of a run: when a run starts with a PTY and our
stdin is a terminal, it puts the terminal in raw mode, and ``close()`` (called by the
app when the run is over, before the summary) gives it back.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from oneoff.client.events import Stream
from oneoff.errors import DriftRefused, NotStarted
from oneoff.outcome import summary_counts
from oneoff.output import views

if TYPE_CHECKING:
    from oneoff.outcome import HostResult
    from oneoff.output.terminal import Terminal
    from oneoff.plan.probe import ResolvedRelease
    from oneoff.values import RunSpec

__all__ = [
    "PROGRESS_MIN_HOSTS",
    "JsonReporter",
    "PrefixReporter",
    "RawReporter",
    "TerminalReporter",
    "make_reporter",
    "result_record",
]

PROGRESS_MIN_HOSTS = 8  # a progress bar only for fan-outs longer than a handful of hosts


def make_reporter(
    terminal: Terminal,
    hosts: Sequence[str],
    *,
    as_json: bool = False,
    quiet: bool = False,
    verbose: bool = False,
    detach: bool = False,
) -> RawReporter | PrefixReporter | JsonReporter:
    """Raw for one host, prefixed lines for several, JSON Lines when asked."""
    if as_json:
        return JsonReporter(terminal)
    if len(hosts) == 1:
        return RawReporter(terminal, quiet=quiet, verbose=verbose)
    progress = len(hosts) > PROGRESS_MIN_HOSTS and terminal.is_tty("stderr") and not quiet
    return PrefixReporter(
        terminal, hosts, quiet=quiet, progress=progress, verbose=verbose, detach=detach
    )


def _said(result: HostResult) -> bool:
    """Whether the result's error gets its own line (drift has its table, skipped its row)."""
    return result.error is not None and not isinstance(result.error, DriftRefused | NotStarted)


class TerminalReporter:
    """What every reporter does with the terminal itself: raw mode for a PTY run."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.lock = threading.Lock()
        self._raw: contextlib.ExitStack | None = None

    def started(self, host: str, release: ResolvedRelease, spec: RunSpec) -> None:
        """The run has a PTY and someone types on our terminal: keystrokes go raw."""
        if not spec.pty or not self.terminal.is_tty("stdin"):
            return
        with self.lock:
            if self._raw is None:
                self._raw = contextlib.ExitStack()
                self._raw.enter_context(self.terminal.raw_mode())

    def close(self) -> None:
        """The run is over: the terminal is ours again (called before the summary)."""
        with self.lock:
            raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()

    @property
    def raw(self) -> bool:
        return self._raw is not None


class RawReporter(TerminalReporter):
    """One host: the command's bytes pass through unchanged."""

    def __init__(self, terminal: Terminal, *, quiet: bool = False, verbose: bool = False) -> None:
        super().__init__(terminal)
        self.quiet = quiet
        self.verbose = verbose and not quiet

    def started(self, host: str, release: ResolvedRelease, spec: RunSpec) -> None:
        if self.verbose:
            self.terminal.message(views.describe_start(host, release, spec))
        super().started(host, release, spec)

    def output(self, host: str, stream: Stream, data: bytes) -> None:
        self.terminal.write(stream, data)

    def notice(self, host: str, message: str) -> None:
        if not self.quiet:
            self.terminal.message(f"{host}: {message}")

    def finished(self, result: HostResult) -> None:
        pass

    def summary(self, results: Sequence[HostResult], status: int) -> None:
        """The dry-run plan or the detached run's id on stdout; an error on stderr."""
        shown = views.plans(results) + views.detached_ids(results)
        if shown:
            self.terminal.write("stdout", shown.encode())
        for result in results:
            if _said(result):
                self.terminal.message(str(result.error))


class PrefixReporter(TerminalReporter):
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
        detach: bool = False,
    ) -> None:
        super().__init__(terminal)
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self.detach = detach
        width = max((len(h) for h in hosts), default=0)
        colour = terminal.colour
        self.prefix = {h: _prefix(h, width, i if colour else None) for i, h in enumerate(hosts)}
        self.partial: dict[tuple[str, Stream], bytes] = {}
        self.total = len(hosts)
        self.done = 0
        self.failed = 0
        self.progress = progress
        self.bar_shown = False

    def started(self, host: str, release: ResolvedRelease, spec: RunSpec) -> None:
        if self.verbose:
            self._write("stderr", f"oneoff: {views.describe_start(host, release, spec)}\n".encode())
        super().started(host, release, spec)

    def _write(self, stream: Stream, block: bytes) -> None:
        """Write under the lock, keeping the progress line out of the way."""
        with self.lock:
            self._clear_bar()
            self.terminal.write(stream, block)
            self._draw_bar()

    def _clear_bar(self) -> None:
        if self.bar_shown:
            self.terminal.write("stderr", b"\r\x1b[K")
            self.bar_shown = False

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

    def _label(self, host: str) -> bytes:
        return self.prefix.get(host, f"[{host}] ".encode())

    def output(self, host: str, stream: Stream, data: bytes) -> None:
        key = (host, stream)
        text = self.partial.pop(key, b"") + data
        lines, _, rest = text.rpartition(b"\n")
        if rest:
            self.partial[key] = rest
        if lines or text.endswith(b"\n"):
            prefix = self._label(host)
            block = b"".join(prefix + line + b"\n" for line in (lines + b"\n").split(b"\n")[:-1])
            self._write(stream, block)

    def flush_partial(self, host: str) -> None:
        """A host's last line without its newline, once the host is done."""
        for stream in ("stdout", "stderr"):
            key: tuple[str, Stream] = (host, stream)
            rest = self.partial.pop(key, b"")
            if rest:
                self._write(key[1], self._label(host) + rest + b"\n")

    def notice(self, host: str, message: str) -> None:
        if not self.quiet:
            self._write("stderr", f"oneoff: {host}: {message}\n".encode())

    def finished(self, result: HostResult) -> None:
        self.flush_partial(result.host)
        with self.lock:
            self.done += 1
            self.failed += 0 if result.ok else 1
        if _said(result):
            self._write("stderr", f"oneoff: {result.error}\n".encode())
        else:
            with self.lock:
                self._draw_bar()

    def summary(self, results: Sequence[HostResult], status: int) -> None:
        """Plans or run ids on stdout; else the table and the count line on stderr.

        No table for a run the drift check refused (its error is the table of who is on
        what), nor for a dry run or a detached start, nor with ``-q``.
        """
        with self.lock:
            self._clear_bar()
        shown = views.plans(results) + views.detached_ids(results)
        if shown:
            self.terminal.write("stdout", shown.encode())
        refused = any(isinstance(r.error, DriftRefused) for r in results)
        if self.quiet or self.detach or refused or all(r.plan is not None for r in results):
            return
        text = views.summary_table(results) + "\n"
        text += views.count_line(results, summary_counts(results)) + "\n"
        self.terminal.write("stderr", text.encode())


def _prefix(host: str, width: int, colour: int | None) -> bytes:
    label = f"[{host}]".ljust(width + 2)
    if colour is not None:
        label = f"\x1b[{31 + colour % 6}m{label}\x1b[0m"
    return (label + " ").encode()


class JsonReporter(TerminalReporter):
    """JSON Lines on stdout only: start, output, exit, then the summary."""

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
        super().started(host, release, spec)

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
        self.emit(
            {
                "event": "summary",
                "exit_code": status,
                "counts": summary_counts(results),
                "hosts": [result_record(r) for r in results],
            }
        )


def result_record(result: HostResult) -> dict[str, Any]:
    """A host's ``exit`` event (and its row in the summary's ``hosts``)."""
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
