"""Raw file-descriptor I/O for the agent, and the outbox of frames for the client.

The agent speaks to sshd through fds 0 and 2 and to the command through pipes or a
PTY, all non-blocking under one poll loop; these helpers are the only places that
turn ``os.read``/``os.write`` errors into what the loop expects.
"""

import errno
import os
import select
import time
from typing import Any, Optional

if not globals().get("ONEOFF_INLINE"):  # imported as a package; inline, protocol precedes us
    from oneoff.remote.protocol import encode_event

CHUNK = 1 << 16
BUFFER_LIMIT = 1 << 20  # bytes held per direction before back-pressure applies


def read_chunk(fd: int) -> Optional[bytes]:
    """Read a chunk; b'' at EOF (EIO is how a PTY master says its slave closed).

    None when nothing is there yet (a spurious wake-up of a non-blocking fd).
    """
    try:
        return os.read(fd, CHUNK)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""
        raise


def read_exactly(fd: int, n: int) -> bytes:
    """Blocking read of exactly n bytes; EOFError if the other end closes first."""
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def read_to_end(fd: int) -> bytes:
    """Blocking read until the other end closes (a pipe's whole message)."""
    data = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk


def write_all(fd: int, data: bytes) -> None:
    """Write everything, waiting out a full pipe even on a non-blocking fd."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)


def drain(fd: int) -> None:
    """Empty a non-blocking pipe (the signal wake-up pipe): its bytes mean only "wake up"."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


class Outbox:
    """Frames waiting for the client on ``fd`` (the channel's stderr).

    Once the run is detached there is no client: frames are dropped, so nothing
    can pile up for a reader that will never come.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.detached = False

    def __len__(self) -> int:
        return len(self.buf)

    def send(self, data: bytes) -> None:
        if not self.detached:
            self.buf += data

    def event(self, event: str, **fields: Any) -> None:
        self.send(encode_event(event, **fields))

    def write_some(self) -> bool:
        """One non-blocking write of what the fd takes: False if it took nothing.

        Raises OSError when the client is gone.
        """
        try:
            n = os.write(self.fd, self.buf)
        except BlockingIOError:
            return False
        del self.buf[:n]
        return True

    def flush(self, deadline: float) -> None:
        """Block until queued frames are written or the deadline passes (client gone)."""
        while self.buf and time.time() < deadline:
            try:
                n = os.write(self.fd, self.buf)
                del self.buf[:n]
            except BlockingIOError:
                select.select([], [self.fd], [], max(0.0, deadline - time.time()))
            except OSError:
                self.buf.clear()
                return

    def clear(self) -> None:
        self.buf.clear()
