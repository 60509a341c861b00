"""Real OpenSSH ``sshd`` servers on loopback for the test-suite.

Every server is a child process we own, started with ``sshd -D -e`` from its own
configuration, its own ed25519 host key and its own ``authorized_keys`` file, all in a
work directory of the caller's choosing. Nothing of the machine's ``/etc/ssh`` is used.

Works as root (any login is then the current user, ``root``) and as an unprivileged user
(sshd can then only log that user in). The one system change made is creating the
privilege-separation directory ``/run/sshd`` when running as root and it is missing.

Note: the sshd runs with ``UsePAM no``, so a user whose password field in ``/etc/shadow``
starts with ``!`` (a locked account) is refused; ``*`` (no password) is fine.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from .release import AppTree

__all__ = [
    "ClientKey",
    "SshHost",
    "SshServer",
    "SshdError",
    "SshdNotInstalled",
    "WriteInventory",
    "find_program",
    "make_client_key",
    "process_tree",
    "start_sshd",
]

START_TIMEOUT = 10.0
"""Seconds to wait for a new sshd to accept a connection and send its banner."""

PORT_ATTEMPTS = 5
"""How many free ports to try when a chosen port is taken before sshd binds it."""

PRIVSEP_DIR = Path("/run/sshd")

_INSTALL_HINT = (
    "the tests run real OpenSSH servers: install openssh-server and openssh-client "
    "(`.ci/run` or `make test-deps` does it, e.g. apt-get install openssh-server openssh-client)"
)

_SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/usr/local/bin", "/bin")


class SshdError(RuntimeError):
    """An sshd could not be started (the message carries its log)."""


class SshdNotInstalled(SshdError):
    """OpenSSH's ``sshd`` or ``ssh-keygen`` is not on this machine."""


def find_program(name: str) -> str:
    """The absolute path of an OpenSSH program (sshd is re-executed, so it must be absolute)."""
    path = os.environ.get("PATH", "")
    search = os.pathsep.join([path, *_SEARCH_DIRS]) if path else os.pathsep.join(_SEARCH_DIRS)
    found = shutil.which(name, path=search)
    if found is None:
        raise SshdNotInstalled(f"{name} not found (searched PATH and /usr/sbin): {_INSTALL_HINT}")
    return os.path.abspath(found)


# --------------------------------------------------------------------------- client keys


@dataclass(frozen=True)
class ClientKey:
    """An ed25519 keypair made with ssh-keygen (no passphrase unless one was given)."""

    private: Path
    public: Path
    passphrase: str = ""

    def public_line(self) -> str:
        """The ``ssh-ed25519 AAAA... comment`` line of the public key."""
        return self.public.read_text().strip()


def make_client_key(directory: Path, name: str = "id_ed25519", passphrase: str = "") -> ClientKey:
    """Generate ``directory/name`` (mode 0600) and ``directory/name.pub`` with ssh-keygen."""
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / name
    _keygen(private, passphrase=passphrase, comment=f"oneoff-tests-{name}")
    return ClientKey(
        private=private, public=private.with_name(private.name + ".pub"), passphrase=passphrase
    )


def _keygen(private: Path, *, passphrase: str, comment: str) -> None:
    if private.exists():
        raise FileExistsError(f"refusing to overwrite an existing key: {private}")
    result = subprocess.run(
        [
            find_program("ssh-keygen"),
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            comment,
            "-f",
            str(private),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SshdError(f"ssh-keygen failed for {private}: {result.stderr.strip()}")


# --------------------------------------------------------------------------- servers

_live_servers: set[SshServer] = set()


class SshServer:
    """One OpenSSH sshd on 127.0.0.1:<free port>, own host key, run with -D -e as our child.

    The sshd leads its own process group (so a terminal's Ctrl-C does not reach it and
    ``stop()`` also ends the per-connection sshd processes). Servers still running when
    the interpreter exits are stopped by an ``atexit`` hook.
    """

    host: str
    port: int
    user: str
    host_key_pub: Path
    pid: int
    workdir: Path
    config_path: Path
    log_path: Path
    authorized_keys_path: Path

    def __init__(
        self,
        *,
        process: subprocess.Popen[bytes],
        host: str,
        port: int,
        user: str,
        workdir: Path,
        host_key_pub: Path,
        config_path: Path,
        log_path: Path,
        authorized_keys_path: Path,
    ) -> None:
        self._process = process
        self.host = host
        self.port = port
        self.user = user
        self.workdir = workdir
        self.host_key_pub = host_key_pub
        self.pid = process.pid
        self.config_path = config_path
        self.log_path = log_path
        self.authorized_keys_path = authorized_keys_path
        self._stopped = False

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<SshServer {self.user}@{self.host}:{self.port} pid={self.pid} {state}>"

    def known_hosts_line(self) -> str:
        """``[127.0.0.1]:PORT ssh-ed25519 AAAA...`` for a known_hosts file (no newline)."""
        key_type, key_b64 = self.host_key_pub.read_text().split()[:2]
        return f"{_known_hosts_name(self.host, self.port)} {key_type} {key_b64}"

    def authorize(self, public_key: Path) -> None:
        """Allow one more public key to log in (sshd reads the file on every attempt)."""
        with self.authorized_keys_path.open("a") as fh:
            fh.write(public_key.read_text().strip() + "\n")

    def log_text(self) -> str:
        """Everything this server (and earlier servers in the same workdir) logged."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def is_running(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        """End the sshd, its per-connection sshd processes and whatever they run; idempotent.

        sshd puts every connection in a session of its own and leaves connections alive
        when the listener exits. So the listener is frozen (it accepts nothing more), its
        process tree is ended deepest first, each process reaped by a living parent (no
        zombies left to an init that may not reap), and then the listener itself.
        """
        if self._stopped:
            return
        self._stopped = True
        _live_servers.discard(self)
        listener = self._process.pid
        if self._process.poll() is None:
            _signal(listener, signal.SIGSTOP)
            for _ in range(3):  # again, for processes forked while we were at it
                levels = _tree_levels(listener)[1:]
                if not levels:
                    break
                for level in reversed(levels):
                    _terminate(level)
            _signal(listener, signal.SIGTERM)
            _signal(listener, signal.SIGCONT)
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _signal(listener, signal.SIGKILL)
            self._process.wait()

    def __enter__(self) -> SshServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_sshd(
    workdir: Path,
    authorized_keys: Sequence[Path],
    *,
    listen: str = "127.0.0.1",
    port: int | None = None,
    extra_config: str = "",
    command_prefix: Sequence[str] = (),
) -> SshServer:
    """Start an sshd listening on ``listen:port`` (a free port when None) and wait for it.

    ``workdir`` receives the host key (kept when it already exists, so a server can be
    restarted in the same workdir with the same identity), ``authorized_keys`` (the given
    public key files), ``sshd_config``, ``sshd.pid`` and ``sshd.log`` (sshd's stderr,
    LogLevel VERBOSE).

    ``extra_config`` is sshd_config text. sshd keeps the *first* value it reads for most
    keywords, so the lines before its first ``Match`` go above the built-in settings (and
    override them); ``Match`` blocks go at the end, where sshd requires them.

    ``command_prefix`` is put before the sshd command line, e.g. ``["ip", "netns", "exec",
    NS]`` to run the server inside a network namespace. The prefix must exec sshd (so the
    child we hold *is* the sshd) and ``listen:port`` must be reachable from here (readiness
    is probed from this process). Pass ``port`` with a prefix: a free port is otherwise
    picked by binding ``listen`` in *our* network namespace.
    """
    if command_prefix and port is None:
        raise ValueError("start_sshd: pass port= together with command_prefix=")
    sshd = find_program("sshd")
    workdir = workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    _ensure_privsep_dir()

    host_key = workdir / "ssh_host_ed25519_key"
    if not host_key.exists():
        _keygen(host_key, passphrase="", comment=f"oneoff-tests-host-{workdir.name}")
    host_key_pub = host_key.with_name(host_key.name + ".pub")

    authorized = workdir / "authorized_keys"
    authorized.write_text("".join(Path(k).read_text().strip() + "\n" for k in authorized_keys))

    config_path = workdir / "sshd_config"
    pid_path = workdir / "sshd.pid"
    log_path = workdir / "sshd.log"
    user = pwd.getpwuid(os.geteuid()).pw_name
    probe_host = _probe_host(listen)

    attempts = 1 if port is not None else PORT_ATTEMPTS
    failure = outcome = ""
    chosen = 0
    for _ in range(attempts):
        chosen = port if port is not None else _free_port(listen)
        config_path.write_text(
            _render_config(
                listen=listen,
                port=chosen,
                host_key=host_key,
                authorized=authorized,
                pid_path=pid_path,
                extra_config=extra_config,
            )
        )
        pid_path.unlink(missing_ok=True)
        with log_path.open("ab") as log:
            log_start = log.tell()
            started = time.monotonic()
            process = subprocess.Popen(
                [*command_prefix, sshd, "-D", "-e", "-f", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        server = SshServer(
            process=process,
            host=listen,
            port=chosen,
            user=user,
            workdir=workdir,
            host_key_pub=host_key_pub,
            config_path=config_path,
            log_path=log_path,
            authorized_keys_path=authorized,
        )
        _live_servers.add(server)
        ready = _wait_ready(process, pid_path, probe_host, chosen, started + START_TIMEOUT)
        if ready:
            return server
        status = process.poll()
        outcome = (
            f"exited with status {status}"
            if status is not None
            else f"did not become ready within {START_TIMEOUT:g}s"
        )
        server.stop()
        with log_path.open("rb") as fh:
            fh.seek(log_start)
            failure = fh.read().decode(errors="replace").strip()
        if port is None and _is_bind_failure(failure):
            continue  # someone took the port between our probe and sshd's bind
        break
    raise SshdError(
        f"sshd on {listen}:{chosen} ({sshd} -D -e -f {config_path}) {outcome}; "
        f"its log ({log_path}):\n{failure or '(empty)'}"
    )


def _render_config(
    *,
    listen: str,
    port: int,
    host_key: Path,
    authorized: Path,
    pid_path: Path,
    extra_config: str,
) -> str:
    head, tail = _split_extra_config(extra_config)
    lines = [
        "# Written by tests/support/sshd.py; one throwaway server for the test-suite.",
        *head,
        f"Port {port}",
        f"ListenAddress {listen}",
        "AddressFamily any",
        f"HostKey {_quote(host_key)}",
        f"AuthorizedKeysFile {_quote(authorized)}",
        f"PidFile {_quote(pid_path)}",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin yes",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitUserEnvironment no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "LogLevel VERBOSE",
        "MaxStartups 200",
        "MaxSessions 50",
        "Subsystem sftp internal-sftp",
        *tail,
    ]
    return "\n".join(lines) + "\n"


def _split_extra_config(text: str) -> tuple[list[str], list[str]]:
    lines = text.splitlines()
    for index, line in enumerate(lines):
        words = line.split()
        if words and words[0].lower() == "match":
            return lines[:index], lines[index:]
    return lines, []


def _quote(path: Path) -> str:
    text = str(path)
    if '"' in text:
        raise ValueError(f"sshd_config cannot name a path containing a double quote: {text}")
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _probe_host(listen: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen, listen)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _free_port(listen: str) -> int:
    with socket.socket(_family(listen), socket.SOCK_STREAM) as sock:
        sock.bind((listen, 0))
        port: int = sock.getsockname()[1]
        return port


def _is_bind_failure(log: str) -> bool:
    return "Address already in use" in log or "Cannot bind any address" in log


def _wait_ready(
    process: subprocess.Popen[bytes], pid_path: Path, host: str, port: int, deadline: float
) -> bool:
    """True once *our* sshd listens: it wrote its PidFile (done after binding) and a
    connection gets an ``SSH-2.0`` banner. False when it exits or the deadline passes."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _pidfile_matches(pid_path, process.pid) and _banner(host, port).startswith(b"SSH-2.0"):
            return True
        time.sleep(0.01)
    return False


def _pidfile_matches(pid_path: Path, pid: int) -> bool:
    try:
        return pid_path.read_text().strip() == str(pid)
    except OSError:
        return False


def _banner(host: str, port: int) -> bytes:
    try:
        with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect((host, port))
            data = b""
            while b"\n" not in data and len(data) < 512:
                chunk = sock.recv(512)
                if not chunk:
                    break
                data += chunk
            # Say goodbye politely so sshd logs a plain preauth disconnect.
            sock.sendall(b"SSH-2.0-oneoff-tests-probe\r\n")
            return data
    except OSError:
        return b""


def _ensure_privsep_dir() -> None:
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _proc_stat(pid: int | str) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _tree_levels(pid: int) -> list[list[int]]:
    """``[[pid], [its children], [their children], ...]`` of live processes, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(entry.name)
            if stat is not None and stat[0] not in ("Z", "X"):
                children.setdefault(stat[1], []).append(int(entry.name))
    levels = [[pid]] if _alive(pid) else []
    while levels and (below := [c for p in levels[-1] for c in children.get(p, [])]):
        levels.append(below)
    return levels


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (from /proc), parents before children."""
    return [p for level in _tree_levels(pid) for p in level]


def _terminate(pids: list[int], timeout: float = 3.0) -> None:
    """SIGTERM ``pids`` and wait until none is alive; SIGKILL what is left at ``timeout``."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while remaining := [pid for pid in pids if _alive(pid)]:
        if time.monotonic() > deadline:
            for pid in remaining:
                _signal(pid, signal.SIGKILL)
            return
        time.sleep(0.005)


@atexit.register
def _stop_all() -> None:
    for server in list(_live_servers):
        server.stop()


# --------------------------------------------------------------------------- fixture types


@dataclass(frozen=True)
class SshHost:
    """What the ``ssh_host`` fixture gives: a server, an app tree and an inventory naming
    one host (``name``) that points at the server with ``app_root`` set to the app."""

    sshd: SshServer
    app: AppTree
    inventory: Path
    name: str = "web1"


class WriteInventory(Protocol):
    """The ``write_inventory`` fixture: ``write_inventory(hosts, **top_level_keys)``."""

    def __call__(self, hosts: Mapping[str, Mapping[str, object]], /, **top: object) -> Path: ...
