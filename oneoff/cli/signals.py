"""Signals during a run: Ctrl-C, SIGTERM and SIGHUP go to the remote commands, not to a
Python traceback; window resizes follow; Ctrl-Z is refused. The CLI's alone: the app
only sees the ``Interrupts`` these handlers feed."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oneoff.client.fleet import Interrupts
    from oneoff.output.terminal import Terminal


class Signals:
    """Handlers installed by ``install()`` (once the hosts are chosen and the run starts;
    before that Ctrl-C is an ordinary KeyboardInterrupt) and restored on leaving."""

    def __init__(self, interrupts: Interrupts, terminal: Terminal) -> None:
        self.interrupts = interrupts
        self.terminal = terminal
        self.saved: dict[int, Any] = {}

    def install(self) -> None:
        if self.saved:
            return
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.saved[signum] = signal.signal(signum, self._interrupted)
        self.saved[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, self._resized)
        self.saved[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, _not_suspending)

    def _interrupted(self, _signum: int, _frame: object) -> None:
        self.interrupts.interrupt()

    def _resized(self, _signum: int, _frame: object) -> None:
        size = self.terminal.window_size()
        if size is not None:
            self.interrupts.resize(*size)

    def __enter__(self) -> Signals:
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self.saved.items():
            signal.signal(signum, previous)
        self.saved.clear()


def _not_suspending(_signum: int, _frame: object) -> None:
    # a stopped client sends no heartbeats, and the agent would stop the command
    os.write(2, b"\r\noneoff: not suspending: the remote command would be stopped\r\n")
