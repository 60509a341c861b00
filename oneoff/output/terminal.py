"""Our side of the terminal, as one injectable value (httpie's ``Environment``).

Everything oneoff knows about the terminal it runs in goes through ``Terminal``: the
three streams, whether each is a terminal, ``TERM`` and ``NO_COLOR``, the window size
and raw mode. Tests build one over ``BytesIO`` streams and override what they need
(``is_tty``, ``window_size``, ``raw_mode``), so no reporter reads ``sys`` or
``os.environ`` itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import IO, Literal

from oneoff.client.events import Stream

AnyStream = Literal["stdin", "stdout", "stderr"]


class Terminal:
    """The process's streams and terminal settings; every argument defaults to our own."""

    def __init__(
        self,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
        *,
        stdin: IO[bytes] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.stderr = stderr if stderr is not None else sys.stderr.buffer
        self.stdin = stdin if stdin is not None else sys.stdin.buffer
        self.environ = environ if environ is not None else os.environ

    def write(self, stream: Stream, data: bytes) -> None:
        """Every byte, unbuffered: a command's output appears as it arrives."""
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
        """One of oneoff's own lines, on stderr."""
        self.write("stderr", f"oneoff: {text}\n".encode())

    def is_tty(self, stream: AnyStream) -> bool:
        target = {"stdin": self.stdin, "stdout": self.stdout, "stderr": self.stderr}[stream]
        try:
            return os.isatty(target.fileno())
        except (OSError, ValueError, AttributeError):
            return False

    @property
    def interactive(self) -> bool:
        """Someone at a keyboard: our stdin and stdout are both terminals (design §3)."""
        return self.is_tty("stdin") and self.is_tty("stdout")

    @property
    def term(self) -> str | None:
        return self.environ.get("TERM")

    @property
    def colour(self) -> bool:
        """Colour on stdout: a terminal, and ``NO_COLOR`` not set (no-color.org)."""
        return self.is_tty("stdout") and "NO_COLOR" not in self.environ

    def window_size(self) -> tuple[int, int] | None:
        """(rows, columns) of our terminal, or None when stdout is not one."""
        try:
            return window_size(self.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            return None

    def raw_mode(self) -> AbstractContextManager[None]:
        """Keystrokes on stdin go through unchanged (no echo, no line editing, no ^C
        signal) until the block ends, however it ends. Nothing happens off a terminal."""
        try:
            fd = self.stdin.fileno()
        except (OSError, ValueError, AttributeError):
            return contextlib.nullcontext()
        return raw_mode(True, fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write less than asked on pipes)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def window_size(fd: int | None = None) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on *fd* (our stdout), or None when there is none."""
    try:
        size = os.get_terminal_size(sys.stdout.fileno() if fd is None else fd)
    except OSError:
        return None
    return size.lines, size.columns


@contextlib.contextmanager
def raw_mode(enabled: bool, fd: int = 0) -> Iterator[None]:
    """Put the terminal in raw mode and restore it on every way out of the block."""
    if not enabled or not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
