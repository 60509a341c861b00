"""Shared fixtures: a real OpenSSH sshd on loopback, a client key, real app trees.

Session-wide: ``client_key``, ``sshd`` (authorised for ``client_key``), ``known_hosts``.
Per test: ``app`` (an app tree under ``tmp_path``), ``write_inventory``, ``ssh_host``.

The sshd's files (config, host key, ``sshd.log``) stay in pytest's temporary directory
(``/tmp/pytest-of-$USER/pytest-N/sshd0/``) after the run, for post-mortems.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from support.release import AppTree, make_app
from support.sshd import (
    ClientKey,
    SshHost,
    SshServer,
    WriteInventory,
    make_client_key,
    start_sshd,
)


@pytest.fixture(scope="session", autouse=True)
def private_xdg_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep oneoff's inventory cache and local audit journal out of the developer's home.

    Set in os.environ so every oneoff subprocess the tests start inherits it.
    """
    base = tmp_path_factory.mktemp("xdg")
    saved = {key: os.environ.get(key) for key in ("XDG_CACHE_HOME", "XDG_STATE_HOME")}
    os.environ["XDG_CACHE_HOME"] = str(base / "cache")
    os.environ["XDG_STATE_HOME"] = str(base / "state")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> ClientKey:
    """An ed25519 keypair without a passphrase, authorised on the session's ``sshd``."""
    return make_client_key(tmp_path_factory.mktemp("client-key"))


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory, client_key: ClientKey) -> Iterator[SshServer]:
    """One real sshd on 127.0.0.1:<free port> for the whole session, as the current user."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"), [client_key.public])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def known_hosts(tmp_path_factory: pytest.TempPathFactory, sshd: SshServer) -> Path:
    """A known_hosts file holding the session sshd's host key (and nothing else).

    Shared by the session: a test that lets oneoff *write* host keys (accept-new) should
    use a file of its own.
    """
    path = tmp_path_factory.mktemp("known-hosts") / "known_hosts"
    path.write_text(sshd.known_hosts_line() + "\n")
    return path


@pytest.fixture
def app(tmp_path: Path) -> AppTree:
    """``tmp_path/app``: shared/.env, shared/oneoff/, one release with a real venv, current."""
    return make_app(tmp_path)


@pytest.fixture
def write_inventory(
    tmp_path: Path, sshd: SshServer, client_key: ClientKey, known_hosts: Path
) -> WriteInventory:
    """Write ``tmp_path/oneoff.yaml`` and return its path.

    ``write_inventory(hosts, **top)``: ``hosts`` is the ``hosts:`` mapping; other keyword
    arguments are further top-level keys (``groups=``, ``tasks=``, ``defaults=``).
    ``defaults`` is prefilled for the session sshd (user, port, identity_file,
    known_hosts, connect_timeout, and an ``ssh_config`` that does not exist so the
    developer's ~/.ssh/config never leaks in); caller-given ``defaults`` are merged over
    these, and a value of None removes a prefilled key.
    """
    prefilled: dict[str, object] = {
        "user": sshd.user,
        "port": sshd.port,
        "identity_file": str(client_key.private),
        "known_hosts": str(known_hosts),
        "ssh_config": str(tmp_path / "no-such-ssh-config"),
        "connect_timeout": 5,
    }

    def write(hosts: Mapping[str, Mapping[str, object]], /, **top: object) -> Path:
        given = top.pop("defaults", None) or {}
        if not isinstance(given, Mapping):
            raise TypeError(f"defaults must be a mapping, not {type(given).__name__}")
        defaults = {**prefilled, **given}
        document: dict[str, object] = {
            "defaults": {key: value for key, value in defaults.items() if value is not None},
            "hosts": hosts,
            **top,
        }
        path = tmp_path / "oneoff.yaml"
        path.write_text(_to_yaml(document))
        return path

    return write


@pytest.fixture
def ssh_host(sshd: SshServer, app: AppTree, write_inventory: WriteInventory) -> SshHost:
    """The session sshd, this test's ``app``, and an inventory with one host ``web1``."""
    inventory = write_inventory({"web1": {"hostname": sshd.host, "app_root": str(app.root)}})
    return SshHost(sshd=sshd, app=app, inventory=inventory)


@pytest.fixture
def two_hosts(ssh_host: SshHost, write_inventory: WriteInventory) -> Path:
    """An inventory with ``web1`` and ``web2``, both the session sshd and this test's app."""
    root = str(ssh_host.app.root)
    return write_inventory(
        {name: {"hostname": "127.0.0.1", "app_root": root} for name in ("web1", "web2")}
    )


def _to_yaml(document: Mapping[str, object]) -> str:
    """Block YAML at the top two levels, JSON (which is YAML) below: one entry a line."""
    lines = ["# Written by the write_inventory test fixture."]
    for key, value in document.items():
        if isinstance(value, Mapping) and value:
            lines.append(f"{key}:")
            lines.extend(
                f"  {json.dumps(str(name))}: {json.dumps(item, default=str)}"
                for name, item in value.items()
            )
        else:
            lines.append(f"{key}: {json.dumps(value, default=str)}")
    return "\n".join(lines) + "\n"
