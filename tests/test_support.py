"""The test infrastructure is real: OpenSSH's own client logs in to our sshd servers and
runs the release's own virtualenv; servers have their own host keys and really stop."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from support.release import DEFAULT_RELEASE_ID, AppTree
from support.sshd import (
    ClientKey,
    SshHost,
    SshServer,
    WriteInventory,
    find_program,
    make_client_key,
    process_tree,
    start_sshd,
)


def ssh(
    server: SshServer, key: ClientKey, known_hosts: Path, command: str
) -> subprocess.CompletedProcess[str]:
    """OpenSSH's client, strict about host keys, ignoring every ssh_config file."""
    return subprocess.run(
        [
            find_program("ssh"),
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            str(key.private),
            "-p",
            str(server.port),
            f"{server.user}@{server.host}",
            command,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def proc_cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None


def test_ssh_runs_the_release_venv(
    sshd: SshServer, client_key: ClientKey, known_hosts: Path, app: AppTree
) -> None:
    current = app.root / "current"
    result = ssh(
        sshd,
        client_key,
        known_hosts,
        f"readlink -f {current} && {current}/.venv/bin/python -c 'import sys; print(sys.prefix)'",
    )
    assert result.returncode == 0, result.stderr + sshd.log_text()
    resolved, prefix = result.stdout.splitlines()[-2:]
    release = app.release(DEFAULT_RELEASE_ID)
    assert resolved == os.path.realpath(release)
    assert os.path.realpath(prefix) == os.path.realpath(release / ".venv")
    assert Path(prefix, "pyvenv.cfg").is_file()


def test_wrong_key_is_refused(
    tmp_path: Path, sshd: SshServer, known_hosts: Path, client_key: ClientKey
) -> None:
    stranger = make_client_key(tmp_path, "stranger")
    result = ssh(sshd, stranger, known_hosts, "true")
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


def test_second_server_has_its_own_host_key(
    tmp_path: Path, sshd: SshServer, client_key: ClientKey, known_hosts: Path
) -> None:
    with start_sshd(tmp_path / "second", [client_key.public]) as second:
        assert second.port != sshd.port
        first_key = sshd.known_hosts_line().split()[1:]
        second_key = second.known_hosts_line().split()[1:]
        assert first_key[0] == second_key[0] == "ssh-ed25519"
        assert first_key != second_key
        assert second.known_hosts_line().startswith(f"[127.0.0.1]:{second.port} ")

        # The first server's key under the second's name: OpenSSH sees a changed host key.
        impostor = tmp_path / "impostor_known_hosts"
        impostor.write_text(f"[127.0.0.1]:{second.port} {' '.join(first_key)}\n")
        refused = ssh(second, client_key, impostor, "true")
        assert refused.returncode == 255
        assert "HOST IDENTIFICATION HAS CHANGED" in refused.stderr

        # The session's known_hosts does not know the second server at all.
        unknown = ssh(second, client_key, known_hosts, "true")
        assert unknown.returncode == 255
        assert "Host key verification failed" in unknown.stderr

        own = tmp_path / "own_known_hosts"
        own.write_text(second.known_hosts_line() + "\n")
        accepted = ssh(second, client_key, own, "echo ok")
        assert (accepted.returncode, accepted.stdout.strip()) == (0, "ok"), accepted.stderr


def test_stop_leaves_no_sshd(tmp_path: Path, client_key: ClientKey) -> None:
    server = start_sshd(tmp_path / "short-lived", [client_key.public])
    pid = server.pid
    cmdline = proc_cmdline(pid)
    assert cmdline is not None and "sshd" in cmdline and str(server.config_path) in cmdline
    own = tmp_path / "known_hosts"
    own.write_text(server.known_hosts_line() + "\n")
    # Leave a session open so that stop() also has a per-connection sshd to end.
    session = subprocess.Popen(
        [
            find_program("ssh"),
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={own}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-i",
            str(client_key.private),
            "-p",
            str(server.port),
            f"{server.user}@{server.host}",
            "echo up; exec sleep 60",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert session.stdout is not None
        assert session.stdout.readline().strip() == "up"
        tree = process_tree(pid)
        assert len(tree) >= 3  # listener, the connection's sshd processes, the command
        server.stop()
        server.stop()  # idempotent
        assert not server.is_running()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert proc_cmdline(pid) is None
        assert session.wait(timeout=10) == 255  # the connection went with the server
        assert [p for p in tree if proc_cmdline(p)] == []  # gone, or a zombie awaiting init
        with pytest.raises(OSError):
            socket.create_connection((server.host, server.port), timeout=2).close()
    finally:
        session.kill()
        session.communicate()


def test_restart_in_same_workdir_keeps_host_key(tmp_path: Path, client_key: ClientKey) -> None:
    with start_sshd(tmp_path / "box", [client_key.public]) as first:
        line = first.known_hosts_line()
        port = first.port
    with start_sshd(tmp_path / "box", [client_key.public], port=port) as again:
        assert again.known_hosts_line() == line
        assert again.pid != first.pid


def test_extra_config_overrides_and_match_blocks(tmp_path: Path, client_key: ClientKey) -> None:
    extra = "LogLevel INFO\nMatch User nobody\n    MaxSessions 3\n"
    with start_sshd(tmp_path / "custom", [client_key.public], extra_config=extra) as server:

        def effective(user: str) -> str:
            return subprocess.run(
                [
                    find_program("sshd"),
                    "-T",
                    "-f",
                    str(server.config_path),
                    "-C",
                    f"user={user},host=localhost,addr=127.0.0.1",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout

        assert "loglevel INFO" in effective(server.user)
        assert "maxsessions 50" in effective(server.user)
        assert "maxsessions 3" in effective("nobody")


def test_client_key_with_passphrase(tmp_path: Path) -> None:
    key = make_client_key(tmp_path, "locked", passphrase="correct horse")
    assert stat.S_IMODE(key.private.stat().st_mode) == 0o600
    derived = subprocess.run(
        [find_program("ssh-keygen"), "-y", "-P", "correct horse", "-f", str(key.private)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[:2]
    assert derived == key.public_line().split()[:2]
    with pytest.raises(FileExistsError):
        make_client_key(tmp_path, "locked")


def test_app_tree_layout(app: AppTree) -> None:
    release = app.release(DEFAULT_RELEASE_ID)
    assert os.readlink(app.root / "current") == f"releases/{DEFAULT_RELEASE_ID}"
    assert os.readlink(release / ".env") == "../../shared/.env"
    assert (release / ".env").read_text().startswith("DATABASE_URL=")
    assert stat.S_IMODE((app.shared / ".env").stat().st_mode) == 0o600
    assert app.state_dir == app.root / "shared" / "oneoff" and app.state_dir.is_dir()
    prefix = subprocess.run(
        [
            str(app.root / "current" / ".venv" / "bin" / "python"),
            "-c",
            "import sys; print(sys.prefix != sys.base_prefix, sys.prefix)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert prefix[0] == "True"
    assert os.path.realpath(prefix[1]) == os.path.realpath(release / ".venv")


def test_add_release_options(app: AppTree) -> None:
    first = app.release(DEFAULT_RELEASE_ID)
    second = app.add_release(
        "20261129T080000",
        env="GREETING=bonjour\n",
        revision="0123abcd",
        venv="env/py",
        make_current=False,
        files={"scripts/hello.py": "#!/usr/bin/env python\nprint('hi')\n", "data/x.txt": "x"},
    )
    assert os.path.realpath(app.root / "current") == os.path.realpath(first)
    env = second / ".env"
    assert not env.is_symlink() and env.read_text() == "GREETING=bonjour\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert (second / "REVISION").read_text() == "0123abcd\n"
    assert (second / "env" / "py" / "bin" / "python").exists()
    assert not (second / ".venv").exists()
    assert os.access(second / "scripts" / "hello.py", os.X_OK)
    assert not os.access(second / "data" / "x.txt", os.X_OK)

    app.set_current("20261129T080000")
    assert os.readlink(app.root / "current") == "releases/20261129T080000"
    assert [p.name for p in app.root.iterdir() if p.name.startswith(".current")] == []

    bare = app.add_release("20261130T000000", venv=None)
    assert not (bare / ".venv").exists()
    assert os.readlink(app.root / "current") == "releases/20261130T000000"
    with pytest.raises(ValueError):
        app.add_release("bad", files={"../escape": "x"})


def test_write_inventory(
    write_inventory: WriteInventory,
    sshd: SshServer,
    client_key: ClientKey,
    known_hosts: Path,
    tmp_path: Path,
) -> None:
    path = write_inventory(
        {"web1": {"hostname": "127.0.0.1", "roles": ["web"]}},
        groups={"prod": {"hosts": ["web1"]}},
        defaults={"connect_timeout": 2, "app_root": tmp_path / "app", "ssh_config": None},
    )
    assert path == tmp_path / "oneoff.yaml"
    data = YAML(typ="safe").load(path.read_text())
    assert data["defaults"] == {
        "user": sshd.user,
        "port": sshd.port,
        "identity_file": str(client_key.private),
        "known_hosts": str(known_hosts),
        "connect_timeout": 2,
        "app_root": str(tmp_path / "app"),
    }
    assert data["hosts"] == {"web1": {"hostname": "127.0.0.1", "roles": ["web"]}}
    assert data["groups"] == {"prod": {"hosts": ["web1"]}}

    plain = YAML(typ="safe").load(write_inventory({"h": {}}).read_text())
    assert not Path(plain["defaults"]["ssh_config"]).exists()
    assert plain["defaults"]["connect_timeout"] == 5


def test_ssh_host(ssh_host: SshHost, client_key: ClientKey, known_hosts: Path) -> None:
    data = YAML(typ="safe").load(ssh_host.inventory.read_text())
    assert data["hosts"] == {"web1": {"hostname": "127.0.0.1", "app_root": str(ssh_host.app.root)}}
    result = ssh(ssh_host.sshd, client_key, known_hosts, f"cat {ssh_host.app.root}/current/.env")
    assert result.returncode == 0, result.stderr
    assert "GREETING=hello" in result.stdout
