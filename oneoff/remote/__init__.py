"""The half of oneoff that runs on the host: the agent, and the protocol both halves speak.

Standard library only and Python >= 3.8 (the release's own Python runs it), importing
nothing of oneoff outside this package. The client imports ``protocol`` for the wire
format and sends ``source()`` for the host to run.

The modules, in dependency order (each imports only from those before it):

    envfile    the env-file parser (python-dotenv's rules, never a value in an error)
    protocol   frames, FrameReader, BOOT: the wire format, shared with the client
    fdio       raw fd reads and writes, and the Outbox of frames for the client
    state      state_dir: locks, the audit log, detached runs' status and logs
    supervise  the poll loop around the command, split by fd role, and its timers
    agent      the run's sequence, from the spec to the exit event; main()
"""

import os
from functools import lru_cache

MODULES = ("envfile", "protocol", "fdio", "state", "supervise", "agent")

# Shipped, the modules are one program: this name, defined first, tells each module that
# the ones before it are already in its namespace, so it must not import them from a
# (possibly different, possibly absent) oneoff installed on the host.
INLINE_MARKER = b"ONEOFF_INLINE = True\n"


@lru_cache(maxsize=None)
def source() -> bytes:
    """The program the host runs (executed by protocol.BOOT): every module, agent last."""
    here = os.path.dirname(os.path.abspath(__file__))
    parts = [INLINE_MARKER]
    for name in MODULES:
        with open(os.path.join(here, name + ".py"), "rb") as handle:
            parts.append(handle.read())
    return b"\n".join(parts)
