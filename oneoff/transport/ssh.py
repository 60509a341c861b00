"""SSH through Fabric's Connection, with its unsafe and slow defaults replaced here only.

Fabric hard-codes ``AutoAddPolicy`` and loads no known_hosts: we check every server
key (jump hosts included) against our own tolerant known_hosts reader, refuse
unknown, changed and revoked keys, and with ``accept-new`` append one line. We
open the TCP socket ourselves to set TCP_NODELAY from the first packet and to
name connect failures precisely. We never use ``Connection.run`` (invoke's
runner reads 1000-byte chunks and rescans its capture buffer); the session
streams from the raw channel instead. Paramiko and socket errors are wrapped
once, here, with the host attached.
"""

from __future__ import annotations

import collections
import errno
import logging
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
from fabric import Config, Connection

from oneoff.errors import AuthFailed, ConnectError, ConnectTimeout, HostKeyError, KeyLocked
from oneoff.scripts import quote, sh_exec
from oneoff.transport.knownhosts import KnownHosts, append_known_host, host_key_name

if TYPE_CHECKING:
    from oneoff.config.model import HostSettings

# paramiko logs failures (with tracebacks) from its own thread; we report them as one line
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False

STDERR_TAIL = 8192
WINDOW_SIZE = 2 * 1024 * 1024  # paramiko's default; measured faster here than larger windows
# A known_hosts key type covers these negotiated host-key algorithms.
_ALGORITHMS = {
    "ssh-rsa": ("ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"),
}


class SshProcess:
    """A paramiko channel running one exec, implementing RemoteProcess."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self._channel = channel
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self._lock:
            try:
                self._channel.sendall(data)
            except paramiko.SSHException as exc:  # callers handle OSError only
                raise ConnectionError(str(exc)) from exc

    def recv(self, size: int, timeout: float | None) -> bytes:
        self._channel.settimeout(timeout)
        try:
            return self._channel.recv(size)
        except TimeoutError as exc:
            raise TimeoutError from exc

    def recv_stderr(self, size: int, timeout: float | None) -> bytes:
        self._channel.settimeout(timeout)
        try:
            return self._channel.recv_stderr(size)
        except TimeoutError as exc:
            raise TimeoutError from exc

    def exit_status(self) -> int | None:
        status = self._channel.recv_exit_status()
        return None if status == -1 else status

    def stderr_tail(self) -> bytes:
        chunks: collections.deque[bytes] = collections.deque(maxlen=4)
        self._channel.settimeout(1.0)
        try:
            while self._channel.recv_stderr_ready() or not self._channel.exit_status_ready():
                chunk = self._channel.recv_stderr(STDERR_TAIL)
                if not chunk:
                    break
                chunks.append(chunk)
        except (TimeoutError, OSError):
            pass
        return b"".join(chunks)[-STDERR_TAIL:]

    def close(self) -> None:
        self._channel.close()


class _VerifyHostKey(paramiko.MissingHostKeyPolicy):
    """Decide on every server key ourselves (paramiko's own stores are left empty)."""

    def __init__(self, transport: SshTransport, host: str, port: int) -> None:
        self.transport = transport
        self.host = host
        self.port = port

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.transport.verify_host_key(self.host, self.port, key.get_name(), key.asbytes())


class SshTransport:
    """One SSH connection to one inventory host."""

    def __init__(self, settings: HostSettings, *, accept_new_host_keys: bool = False) -> None:
        self.settings = settings
        self.host = settings.name
        self.accept_new = accept_new_host_keys or settings.host_key_policy == "accept-new"
        self.known_hosts_path = settings.known_hosts
        self._known: KnownHosts | None = None
        self._conn: Connection | None = None
        self.target = settings.hostname

    # -- host keys ----------------------------------------------------------------
    @property
    def known(self) -> KnownHosts:
        if self._known is None:
            self._known = KnownHosts.load([self.known_hosts_path])
        return self._known

    def verify_host_key(self, host: str, port: int, keytype: str, blob: bytes) -> None:
        verdict = self.known.check(host, port, keytype, blob)
        if verdict.ok:
            return
        file = self.known_hosts_path
        name = host_key_name(host, port)
        if verdict.kind == "revoked":
            raise HostKeyError(verdict.describe(), host=self.host, hint="refusing a revoked key")
        if verdict.kind == "changed":
            raise HostKeyError(
                f"HOST KEY CHANGED: {verdict.describe()}",
                host=self.host,
                hint=f"if the host was really rebuilt, verify the new key and remove the old "
                f"one: ssh-keygen -R {quote(name)} -f {quote(str(file))}",
            )
        if not self.accept_new:
            raise HostKeyError(
                f"unknown host key: {verdict.describe()}",
                host=self.host,
                hint=f"verify it, then add it to {file} (ssh-keyscan -p {port} {quote(host)}), "
                "or pass --accept-new-host-keys",
            )
        try:
            append_known_host(file, host, port, keytype, blob)
        except (OSError, ValueError) as exc:
            raise HostKeyError(
                f"cannot record the new host key in {file}: {exc}", host=self.host
            ) from exc
        self._known = None

    def _restrict_to_known_types(self, host: str, port: int) -> dict[str, list[str]]:
        """Negotiate a host-key type we have on record, as OpenSSH orders by known_hosts."""
        known_types = {key.keytype for key in self.known.keys_for(host, port)}
        if not known_types:
            return {}
        wanted = {alg for t in known_types for alg in _ALGORITHMS.get(t, (t,))}
        offered: tuple[str, ...] = getattr(paramiko.Transport, "_preferred_keys", ())
        return {"keys": [alg for alg in offered if alg not in wanted]}

    # -- connecting -----------------------------------------------------------------
    def _connection(self) -> Connection:
        s = self.settings
        ssh_config = paramiko.SSHConfig()
        if s.ssh_config is not None and Path(s.ssh_config).is_file():
            try:
                ssh_config = paramiko.SSHConfig.from_path(str(s.ssh_config))
            except (OSError, paramiko.SSHException) as exc:
                raise ConnectError(
                    f"cannot read ssh_config {s.ssh_config}: {exc}", host=self.host
                ) from exc
        config = Config(ssh_config=ssh_config, lazy=True)
        connect_kwargs: dict[str, Any] = {
            "banner_timeout": s.connect_timeout,
            "auth_timeout": s.connect_timeout,
            "allow_agent": True,
        }
        if s.identity_file is not None:
            if not Path(s.identity_file).is_file():
                raise ConnectError(
                    f"identity_file {s.identity_file} does not exist",
                    host=self.host,
                    hint="fix identity_file in the inventory, or leave it out to use ssh-agent",
                )
            connect_kwargs["key_filename"] = [str(s.identity_file)]
            connect_kwargs["look_for_keys"] = False
        return Connection(
            s.hostname if s.hostname_set else s.name,
            user=s.user,
            port=s.port,
            config=config,
            connect_timeout=s.connect_timeout,
            connect_kwargs=connect_kwargs,
        )

    def _secure(self, conn: Connection) -> None:
        """Replace Fabric's AutoAddPolicy on this connection and on any jump host's."""
        conn.client.set_missing_host_key_policy(_VerifyHostKey(self, conn.host, conn.port))
        disabled = self._restrict_to_known_types(conn.host, conn.port)
        if disabled:
            conn.connect_kwargs["disabled_algorithms"] = disabled
        if isinstance(conn.gateway, Connection):
            self._secure(conn.gateway)

    def connect(self) -> None:
        conn = self._connection()
        self._secure(conn)
        self.target = f"{conn.user}@{conn.host}:{conn.port}"
        if conn.gateway is None:
            conn.connect_kwargs["sock"] = self._open_socket(conn.host, conn.port)
        try:
            conn.open()
        except HostKeyError:
            conn.close()
            raise
        except paramiko.PasswordRequiredException as exc:
            raise KeyLocked(
                f"the key file is passphrase-protected ({exc})",
                host=self.host,
                hint="load it into ssh-agent (ssh-add); oneoff never prompts",
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise AuthFailed(
                f"authentication failed for {self.target}",
                host=self.host,
                hint=self._auth_hint(),
            ) from exc
        except paramiko.SSHException as exc:
            raise ConnectError(
                f"SSH handshake with {self.target} failed: {exc}", host=self.host
            ) from exc
        except OSError as exc:
            raise self._socket_error(exc, conn.host, conn.port) from exc
        transport = conn.client.get_transport()
        assert transport is not None
        if isinstance(transport.sock, socket.socket):
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn

    def _auth_hint(self) -> str:
        s = self.settings
        tried = f"key {s.identity_file}" if s.identity_file else "default keys in ~/.ssh"
        return f"tried {tried} and ssh-agent; check the user and authorized_keys"

    def _open_socket(self, host: str, port: int) -> socket.socket:
        timeout = self.settings.connect_timeout
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise self._socket_error(exc, host, port) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _socket_error(self, exc: OSError, host: str, port: int) -> ConnectError:
        where = f"{host}:{port}"
        if isinstance(exc, socket.gaierror):
            return ConnectError(
                f"cannot resolve host name {host!r}", host=self.host, hint="check hostname"
            )
        if isinstance(exc, TimeoutError):
            return ConnectTimeout(
                f"connection to {where} timed out after {self.settings.connect_timeout:g}s",
                host=self.host,
                hint="is the host up and reachable? raise connect_timeout for a slow link",
            )
        if exc.errno == errno.ECONNREFUSED:
            return ConnectError(
                f"connection refused by {where}", host=self.host, hint="is sshd running?"
            )
        return ConnectError(f"cannot connect to {where}: {exc.strerror or exc}", host=self.host)

    # -- running --------------------------------------------------------------------
    def start(self, script: str) -> SshProcess:
        if self._conn is None:
            self.connect()
        assert self._conn is not None
        transport = self._conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectError("the connection is closed", host=self.host)
        try:
            channel = transport.open_session(window_size=WINDOW_SIZE)
            # The login shell may not be POSIX (fish, tcsh): hand the script to sh.
            channel.exec_command(sh_exec(script))
        except paramiko.SSHException as exc:
            raise ConnectError(f"cannot start a session: {exc}", host=self.host) from exc
        return SshProcess(channel)

    def key_fingerprint(self) -> str | None:
        transport = self._conn.client.get_transport() if self._conn else None
        key = getattr(getattr(transport, "auth_handler", None), "private_key", None)
        return str(key.fingerprint) if key is not None else None

    def describe(self) -> str:
        return f"ssh {self.target}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
