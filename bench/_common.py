"""Shared set-up for the benchmarks: one real OpenSSH sshd on loopback, a client key, a
known_hosts file, an app tree and an inventory naming host ``h``; plus the two ways of
reaching it (``oneoff`` and plain ``ssh``) and a child runner that measures wall time and
the child's own peak RSS.

Every benchmark compares oneoff against plain OpenSSH doing the same work *in the same
run*, alternating the two, and reports medians and ratios: the machines are shared and
noisy, so absolute figures mean little and the ratio is the result.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from support.release import AppTree, make_app  # noqa: E402
from support.sshd import ClientKey, SshServer, make_client_key, start_sshd  # noqa: E402

__all__ = [
    "HOST",
    "Bench",
    "Measured",
    "bench_env",
    "fmt_ratio",
    "median",
    "oneoff_command",
    "peak_rss_kb",
    "run_measured",
    "ssh_argv",
]

HOST = "h"
"""The inventory's one host."""

MiB = 1 << 20


def oneoff_command() -> list[str]:
    """What a user runs: the ``oneoff`` console script of the venv we run in, else -m."""
    script = Path(sys.executable).parent / "oneoff"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "oneoff"]


def ssh_argv(server: SshServer, key: Path, known_hosts: Path) -> list[str]:
    """Plain OpenSSH to ``server`` with the same key and host-key checking oneoff gets.

    ``-F none``: no ssh_config at all, as oneoff's inventory points ``ssh_config`` at a
    file that does not exist (this machine's /etc/ssh/ssh_config turns GSSAPI on, which
    oneoff never tries). No multiplexing: a fresh connection per run, as oneoff makes.
    """
    return [
        "ssh",
        "-F",
        "none",
        "-p",
        str(server.port),
        "-i",
        str(key),
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        f"{server.user}@{server.host}",
    ]


@dataclass(frozen=True)
class Bench:
    """Everything a benchmark needs; made by ``bench_env`` and gone when it exits."""

    base: Path
    server: SshServer
    key: ClientKey
    known_hosts: Path
    app: AppTree
    inventory: Path
    host: str = HOST

    def oneoff(self, *args: str) -> list[str]:
        """``oneoff -i INVENTORY ARGS``."""
        return [*oneoff_command(), "-i", str(self.inventory), *args]

    def ssh(self, remote_command: str) -> list[str]:
        """``ssh ... REMOTE_COMMAND`` (one string, run by the login shell on the host)."""
        return [*ssh_argv(self.server, self.key.private, self.known_hosts), remote_command]

    def in_release(self, command: str) -> str:
        """The OpenSSH one-liner doing what oneoff does before COMMAND: cd into the pinned
        release, load the shared .env, exec COMMAND (``command`` is shell text)."""
        root = shlex.quote(str(self.app.root))
        return (
            f'cd "$(readlink -f {root}/current)" && set -a && . {root}/shared/.env '
            f"&& set +a && exec {command}"
        )

    def environment(self) -> dict[str, str]:
        """Our environment without what could point oneoff elsewhere."""
        env = dict(os.environ)
        env.pop("ONEOFF_INVENTORY", None)
        return env


def _write_inventory(path: Path, server: SshServer, key: ClientKey, known: Path, app: Path) -> None:
    path.write_text(
        "# Written by bench/_common.py.\n"
        "defaults:\n"
        f"  user: {server.user}\n"
        f"  port: {server.port}\n"
        f"  identity_file: {key.private}\n"
        f"  known_hosts: {known}\n"
        f"  ssh_config: {path.parent / 'no-such-ssh-config'}\n"
        "  connect_timeout: 10\n"
        f"  app_root: {app}\n"
        "hosts:\n"
        f"  {HOST}: {{hostname: {server.host}}}\n"
    )


@contextlib.contextmanager
def bench_env(name: str) -> Iterator[Bench]:
    """Start the sshd and build the app tree in a temporary directory; always clean up."""
    base = Path(tempfile.mkdtemp(prefix=f"oneoff-bench-{name}-"))
    try:
        key = make_client_key(base / "keys")
        server = start_sshd(base / "sshd", [key.public])
        try:
            known_hosts = base / "known_hosts"
            known_hosts.write_text(server.known_hosts_line() + "\n")
            app = make_app(base)
            inventory = base / "oneoff.yaml"
            _write_inventory(inventory, server, key, known_hosts, app.root)
            yield Bench(
                base=base,
                server=server,
                key=key,
                known_hosts=known_hosts,
                app=app,
                inventory=inventory,
            )
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Measured:
    """One child process: how it ended, how long it took, its own peak RSS."""

    argv: tuple[str, ...]
    returncode: int
    wall: float
    """Seconds from just before the fork to the child being reaped."""
    maxrss_kb: int
    """Peak resident set of the child (and of any descendants it reaped), from wait4."""
    stderr: bytes
    first_byte: float | None = None
    """Seconds from the start to the first stdout byte, when stdout was consumed."""
    stdout_bytes: int = 0

    def describe(self) -> str:
        tail = self.stderr.decode("utf-8", "replace").strip()
        return f"$ {shlex.join(self.argv)}\n  exit status {self.returncode}" + (
            f"\n  stderr: {tail[-2000:]}" if tail else "\n  stderr: (empty)"
        )


def run_measured(
    argv: Sequence[str],
    *,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    consume: Callable[[bytes], None] | None = None,
    env: dict[str, str] | None = None,
) -> Measured:
    """Run ``argv`` and reap it with ``os.wait4`` for its own rusage.

    ``getrusage(RUSAGE_CHILDREN)`` is the maximum over *every* child this process ever
    reaped, so it cannot tell one child from another; ``wait4`` gives the rusage of
    exactly the child it reaps. With ``consume``, stdout is a pipe read with
    ``os.read(fd, 1 MiB)`` and each chunk is handed over; otherwise stdout is discarded.
    stderr goes to a temporary file (no pipe to deadlock on) and is returned.
    """
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=subprocess.PIPE if consume is not None else subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        first: float | None = None
        total = 0
        try:
            if consume is not None:
                assert process.stdout is not None
                fd = process.stdout.fileno()
                while chunk := os.read(fd, MiB):
                    if first is None:
                        first = time.perf_counter() - started
                    total += len(chunk)
                    consume(chunk)
                process.stdout.close()
            _pid, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        wall = time.perf_counter() - started
        # Reaped by us: tell Popen, so that it never waits for (or signals) the pid again.
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return Measured(
            argv=tuple(argv),
            returncode=process.returncode,
            wall=wall,
            maxrss_kb=int(usage.ru_maxrss),
            stderr=err.read(),
            first_byte=first,
            stdout_bytes=total,
        )


def peak_rss_kb(
    argv: Sequence[str],
    *,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
) -> int:
    """Peak RSS (KiB) of one run of ``argv`` on its own (see ``run_measured``)."""
    return run_measured(argv, stdin=stdin, env=env).maxrss_kb


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt_ratio(value: float, target: str, ok: bool) -> str:
    return f"{value:.2f}  (target {target}: {'met' if ok else 'NOT met'})"


def login_shell_ms(*flags: str, runs: int = 5) -> tuple[str, float]:
    """How long this account's login shell takes to run ``true`` as sshd starts it for each
    exec (bash reads ~/.bashrc when SSH_CLIENT is set); on loopback the host is this
    machine. *flags* go before ``-c`` (``--norc`` to measure without the rc files)."""
    import pwd

    account = pwd.getpwuid(os.geteuid())
    shell = account.pw_shell or "/bin/sh"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "SHELL": shell,
        "SSH_CLIENT": "127.0.0.1 40000 22",
    }
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [shell, *flags, "-c", "true"], env=env, stdin=subprocess.DEVNULL, check=False
        )
        times.append(time.perf_counter() - started)
    return shell, median(times) * 1000


MB = 1_000_000  # benchmarks report MB as 10^6 bytes


def size_and_rounds(description: str, default_mb: float, what: str) -> tuple[int, int]:
    """The --mb and --rounds every transfer benchmark takes: (bytes, rounds)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--mb", type=float, default=default_mb, help=f"megabytes (10^6) {what}")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each (default 3)")
    args = parser.parse_args()
    if args.rounds < 1 or args.mb <= 0:
        parser.error("--rounds and --mb must be positive")
    return int(args.mb * MB), args.rounds
