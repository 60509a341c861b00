"""The local terminal during an interactive run: raw mode, window size, the ``~.`` escape."""

from __future__ import annotations

import contextlib
import os
import sys
import termios
import tty
from collections.abc import Iterator

ESCAPE_HELP = "~. close the session (after Enter)   ~~ send a literal ~"


class EscapeFilter:
    """OpenSSH's escape: ``~`` right after Enter starts a sequence; ``~.`` hangs up.

    ``~~`` sends one ``~``; a ``~`` followed by anything else is sent as typed.
    """

    def __init__(self) -> None:
        self.at_line_start = True
        self.pending = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Return the bytes to send and whether the user asked to hang up."""
        out = bytearray()
        for byte in data:
            char = bytes((byte,))
            if self.pending:
                self.pending = False
                if char == b".":
                    return bytes(out), True
                out += b"~" if char == b"~" else b"~" + char
            elif self.at_line_start and char == b"~":
                self.pending = True
                continue
            else:
                out += char
            self.at_line_start = char in (b"\r", b"\n")
        return bytes(out), False


def window_size(fd: int | None = None) -> tuple[int, int] | None:
    """(rows, columns) of our terminal, or None when there is none."""
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
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
