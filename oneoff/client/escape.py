"""OpenSSH's ``~.`` escape for a PTY run driven from our own terminal."""

from __future__ import annotations

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
