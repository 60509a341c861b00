"""Run the real ``oneoff`` command line as a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ONEOFF = [sys.executable, "-m", "oneoff"]


def oneoff(
    *args: str,
    inventory: Path | None = None,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """``oneoff [-i INVENTORY] ARGS`` with stdin from *input* (or /dev/null), output captured."""
    command = [*ONEOFF, *(["-i", str(inventory)] if inventory else []), *args]
    full_env = {**os.environ, **(env or {})}
    full_env.pop("ONEOFF_INVENTORY", None)
    return subprocess.run(
        command,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def spawn(
    *args: str,
    inventory: Path,
    stdin: int | None = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start oneoff in the background (for signals and for scanning /proc while it runs)."""
    return subprocess.Popen(
        [*ONEOFF, "-i", str(inventory), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def processes_with(text: str) -> list[tuple[int, str]]:
    """PIDs (and command lines) of every process whose argv contains *text*."""
    found = []
    needle = text.encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        if needle in cmdline:
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll *predicate* until it holds or *timeout* passes; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()
