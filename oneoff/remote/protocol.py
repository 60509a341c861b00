# The wire protocol between oneoff and its agent. Standard library only, Python >= 3.8:
# it is shipped inline with the agent (see oneoff.remote.source) and imported on the
# client, which needs only these few names, not the agent's process machinery.
import json
import struct
from typing import Any, List, Tuple

PROTOCOL_VERSION = 1

# A frame is a 1-byte kind, a 4-byte big-endian length, then the payload.
FRAME = struct.Struct(">cI")
MAX_FRAME = 1 << 20
# client -> agent
SPEC = b"S"  # the run's JSON spec; first frame after the agent's source
STDIN = b"I"  # bytes for the command's stdin
STDIN_EOF = b"Z"  # the client's stdin ended
SIGNAL = b"K"  # a signal name (INT, TERM, HUP, KILL) for the command's process group
HEARTBEAT = b"H"  # the client is alive; sent every alive_interval / 2
WINCH = b"W"  # JSON [rows, cols]: the local terminal was resized (PTY runs)
# agent -> client
STDOUT = b"o"
STDERR = b"e"
EVENT = b"J"  # JSON: started, lock_wait, lock_busy, error, plan, exit
ALIVE = b"h"  # the agent is alive; sent when nothing else was for alive_interval / 2
# Frames travel on the agent's stderr; the command's stdout goes straight to the channel's
# stdout, unframed and uncopied. SYNC starts the frame stream, so anything a shell printed
# on stderr before the agent started is told apart from frames.
SYNC = b"\x00oneoff-frames-1\x00"

# BOOT is the whole of `python -c` on the host: it reads the agent's source as one
# frame from stdin (unbuffered, so no byte meant for the command is swallowed) and runs it.
BOOT = (
    "import os,struct\n"
    "def _oneoff_read(n):\n"
    " b=b''\n"
    " while len(b)<n:\n"
    "  c=os.read(0,n-len(b))\n"
    "  if not c:raise SystemExit(0)\n"
    "  b+=c\n"
    " return b\n"
    "k,n=struct.unpack('>cI',_oneoff_read(5))\n"
    "exec(compile(_oneoff_read(n),'oneoff-agent','exec'))\n"
)


def encode_frame(kind: bytes, payload: bytes = b"") -> bytes:
    return FRAME.pack(kind, len(payload)) + payload


def encode_event(event: str, **fields: Any) -> bytes:
    fields["event"] = event
    return encode_frame(EVENT, json.dumps(fields, sort_keys=True).encode())


class FrameReader:
    """Incremental frame parser: feed bytes, take whole frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> List[Tuple[bytes, bytes]]:
        self._buf += data
        frames = []
        while len(self._buf) >= FRAME.size:
            kind, size = FRAME.unpack_from(self._buf)
            if size > MAX_FRAME:
                raise ValueError("frame too large: %d bytes" % size)
            end = FRAME.size + size
            if len(self._buf) < end:
                break
            with memoryview(self._buf) as view:  # one copy, not two
                frames.append((kind, bytes(view[FRAME.size : end])))
            del self._buf[:end]  # O(1): CPython moves a bytearray's start, not its bytes
        return frames
