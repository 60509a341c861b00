"""One admin command on one host, end to end, over a real OpenSSH sshd."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from support.release import AppTree
from support.run import oneoff, processes_with, spawn
from support.sshd import ClientKey, SshHost, SshServer, WriteInventory, make_client_key

SECRET = "s3cret"  # part of the default shared/.env's DATABASE_URL


def test_task_runs_in_the_pinned_release_with_its_venv_and_env(
    ssh_host: SshHost, write_inventory: WriteInventory
) -> None:
    code = (
        "import os, sys; print(os.getcwd()); print(sys.prefix); "
        "print(os.environ['GREETING']); print(os.environ['VIRTUAL_ENV'])"
    )
    inventory = write_inventory(
        {"web1": {"hostname": "127.0.0.1", "app_root": str(ssh_host.app.root)}},
        tasks={"where": {"command": ["python", "-c", code]}},
    )
    result = oneoff("-H", "web1", "where", inventory=inventory)
    assert result.returncode == 0, result.stderr
    release = ssh_host.app.release("20261128T120000").resolve()
    cwd, prefix, greeting, venv = result.stdout.decode().splitlines()
    assert cwd == str(release)
    assert prefix == str(release / ".venv")
    assert venv == str(release / ".venv")
    assert greeting == "hello"


def test_exit_status_of_the_remote_command_is_oneoffs(ssh_host: SshHost) -> None:
    result = oneoff("-H", "web1", "--", "sh", "-c", "exit 7", inventory=ssh_host.inventory)
    assert result.returncode == 7
    assert result.stdout == b""


def test_stdout_and_stderr_pass_through_byte_for_byte(ssh_host: SshHost) -> None:
    code = (
        "import sys; sys.stdout.buffer.write(bytes(range(256)) * 3); "
        "sys.stderr.buffer.write(b'\\xff\\x00err\\r\\n')"
    )
    result = oneoff("-H", "web1", "--", "python", "-c", code, inventory=ssh_host.inventory)
    assert result.returncode == 0
    assert result.stdout == bytes(range(256)) * 3
    assert result.stderr == b"\xff\x00err\r\n"


def test_large_output_arrives_complete(ssh_host: SshHost) -> None:
    size = 32 * 1024 * 1024
    result = oneoff(
        "-H", "web1", "--", "head", "-c", str(size), "/dev/urandom", inventory=ssh_host.inventory
    )
    assert result.returncode == 0
    assert len(result.stdout) == size


@pytest.mark.parametrize(
    "hostile",
    ["a b", "'", '"', "$HOME", "$(id)", "`id`", ";", "&", "|", "*", "new\nline", "-x", "--", ""],
)
def test_hostile_argument_reaches_the_command_literally(ssh_host: SshHost, hostile: str) -> None:
    code = "import sys; sys.stdout.write(repr(sys.argv[1:]))"
    result = oneoff("-H", "web1", "--", "python", "-c", code, hostile, inventory=ssh_host.inventory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == repr([hostile])


def test_piped_stdin_reaches_the_command_complete_with_eof(ssh_host: SshHost) -> None:
    data = os.urandom(5 * 1024 * 1024 + 17)
    code = "import sys, hashlib; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"
    result = oneoff(
        "-H", "web1", "--", "python", "-c", code, input=data, inventory=ssh_host.inventory
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == hashlib.sha256(data).hexdigest()


def test_run_script_shipped_in_the_release(
    sshd: SshServer, tmp_path: Path, write_inventory: WriteInventory
) -> None:
    from support.release import make_app

    app = make_app(tmp_path, files={"scripts/fix.py": "import sys; print('fixing', sys.argv[1:])"})
    inventory = write_inventory({"web1": {"hostname": "127.0.0.1", "app_root": str(app.root)}})
    result = oneoff("-H", "web1", "run", "scripts/fix.py", "--dry-run", inventory=inventory)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"fixing ['--dry-run']\n"


@pytest.mark.parametrize("path", ["../outside.py", "/etc/passwd", "scripts/../../x.py"])
def test_run_script_outside_the_release_is_refused(ssh_host: SshHost, path: str) -> None:
    result = oneoff("-H", "web1", "run", path, inventory=ssh_host.inventory)
    assert result.returncode == 2
    assert b"outside the release" in result.stderr


def test_env_values_never_appear_on_any_command_line(ssh_host: SshHost) -> None:
    marker = "oneoff-secret-scan"
    proc = spawn(
        "-H", "web1", "-e", "EXTRA_TOKEN", "--",
        "python", "-c",
        f"import os, time; print('{marker}', len(os.environ['EXTRA_TOKEN']), flush=True); "
        "time.sleep(30)",
        inventory=ssh_host.inventory,
        env={"EXTRA_TOKEN": "tok-4242"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"{marker} 8\n".encode()  # len("tok-4242")
        # the command is running remotely: nothing on this machine (client, sshd, agent,
        # command) carries a secret in its argv
        assert processes_with(marker), "the scan must see the running command"
        assert processes_with(SECRET) == []
        assert processes_with("tok-4242") == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_extra_env_overrides_env_file_and_is_not_shown(ssh_host: SshHost) -> None:
    result = oneoff(
        "-H", "web1", "-e", "GREETING=bonjour", "--",
        "python", "-c", "import os; print(os.environ['GREETING'])",
        inventory=ssh_host.inventory,
    )  # fmt: skip
    assert result.returncode == 0
    assert result.stdout == b"bonjour\n"


def test_dry_run_shows_plan_with_key_counts_and_no_values(ssh_host: SshHost) -> None:
    result = oneoff(
        "-H", "web1", "--dry-run", "-e", "TOKEN=tok-777", "--", "touch", "/tmp/should-not-exist",
        inventory=ssh_host.inventory,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "20261128T120000" in out
    assert "(2 keys)" in out
    assert "TOKEN=***" in out
    assert "touch /tmp/should-not-exist" in out
    assert SECRET not in out + result.stderr.decode()
    assert "tok-777" not in out + result.stderr.decode()
    assert not Path("/tmp/should-not-exist").exists()


# -- bad input: one clear line, the right status, nothing run --------------------------


def inventory_with_known_hosts(
    write_inventory: WriteInventory, app: AppTree, path: Path, text: str, **defaults: object
) -> Path:
    """A one-host inventory whose known_hosts file is *path*, holding *text*."""
    path.write_text(text)
    return write_inventory(
        {"web1": {"hostname": "127.0.0.1", "app_root": str(app.root)}},
        defaults={"known_hosts": str(path), **defaults},
    )


def test_unknown_host_key_is_refused_with_fingerprint_and_file(
    sshd: SshServer, app: AppTree, write_inventory: WriteInventory, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    inventory = inventory_with_known_hosts(write_inventory, app, empty, "# nothing yet\n")
    result = oneoff("-H", "web1", "--", "true", inventory=inventory)
    assert result.returncode == 255
    err = result.stderr.decode()
    assert "unknown host key" in err and "SHA256:" in err and str(empty) in err
    assert "Traceback" not in err
    assert empty.read_text() == "# nothing yet\n"


def test_accept_new_records_one_line_and_keeps_the_file(
    sshd: SshServer, app: AppTree, write_inventory: WriteInventory, tmp_path: Path
) -> None:
    path = tmp_path / "known_hosts"
    inventory = inventory_with_known_hosts(write_inventory, app, path, "# keep me\n")
    first = oneoff("-H", "web1", "--accept-new-host-keys", "--", "true", inventory=inventory)
    assert first.returncode == 0, first.stderr
    assert path.read_text() == "# keep me\n" + sshd.known_hosts_line() + "\n"
    second = oneoff("-H", "web1", "--", "true", inventory=inventory)  # now strict and known
    assert second.returncode == 0


def test_changed_host_key_is_refused_even_with_accept_new(
    sshd: SshServer, app: AppTree, write_inventory: WriteInventory, tmp_path: Path
) -> None:
    other = make_client_key(tmp_path / "k")  # any ed25519 key that is not the server's
    keytype, blob = other.public.read_text().split()[:2]
    inventory = inventory_with_known_hosts(
        write_inventory,
        app,
        tmp_path / "known_hosts",
        f"[127.0.0.1]:{sshd.port} {keytype} {blob}\n",
        host_key_policy="accept-new",
    )
    result = oneoff("-H", "web1", "--", "true", inventory=inventory)
    assert result.returncode == 255
    assert b"HOST KEY CHANGED" in result.stderr
    assert b"ssh-keygen -R" in result.stderr


def test_connection_refused_names_host_and_port(
    app: AppTree, write_inventory: WriteInventory
) -> None:
    inventory = write_inventory(
        {"web1": {"hostname": "127.0.0.1", "port": 1, "app_root": str(app.root)}}
    )
    result = oneoff("-H", "web1", "--", "true", inventory=inventory)
    assert result.returncode == 255
    assert b"web1: connection refused by 127.0.0.1:1" in result.stderr


def test_unresolvable_host_name_is_a_clear_error(
    app: AppTree, write_inventory: WriteInventory
) -> None:
    inventory = write_inventory(
        {"web1": {"hostname": "no-such-host.invalid", "app_root": str(app.root)}}
    )
    result = oneoff("-H", "web1", "--", "true", inventory=inventory)
    assert result.returncode == 255
    assert b"cannot resolve host name 'no-such-host.invalid'" in result.stderr


def test_refused_key_is_an_authentication_error(
    app: AppTree, write_inventory: WriteInventory, tmp_path: Path
) -> None:
    stranger = make_client_key(tmp_path / "stranger")
    inventory = write_inventory(
        {"web1": {"hostname": "127.0.0.1", "app_root": str(app.root)}},
        defaults={"identity_file": str(stranger.private)},
    )
    result = oneoff("-H", "web1", "--", "true", inventory=inventory, env={"SSH_AUTH_SOCK": ""})
    assert result.returncode == 255
    assert b"authentication failed" in result.stderr


def test_passphrase_key_without_agent_fails_instead_of_prompting(
    app: AppTree, write_inventory: WriteInventory, tmp_path: Path
) -> None:
    locked = make_client_key(tmp_path / "locked", passphrase="correct horse")
    inventory = write_inventory(
        {"web1": {"hostname": "127.0.0.1", "app_root": str(app.root)}},
        defaults={"identity_file": str(locked.private)},
    )
    started = time.monotonic()
    result = oneoff(
        "-H", "web1", "--", "true", inventory=inventory, env={"SSH_AUTH_SOCK": ""}, timeout=30
    )
    assert result.returncode == 255
    assert b"passphrase" in result.stderr or b"authentication failed" in result.stderr
    assert time.monotonic() - started < 30


def _break(app: AppTree, how: str) -> str:
    """Damage the app tree one way; return the text the error must contain."""
    release = app.release("20261128T120000")
    if how == "dangling current":
        (app.root / "current").unlink()
        (app.root / "current").symlink_to("releases/gone")
        return "dangling symlink (-> releases/gone)"
    if how == "missing current":
        (app.root / "current").unlink()
        return f"{app.root / 'current'} does not exist"
    if how == "current outside app root":
        (app.root / "current").unlink()
        (app.root / "current").symlink_to("/tmp")
        return "outside the app root"
    if how == "missing venv":
        os.rename(release / ".venv", release / "old-venv")
        return "no virtualenv interpreter"
    if how == "missing env file":
        (app.shared / ".env").unlink()
        return "env file"
    if how == "unparseable env line":
        (app.shared / ".env").write_text(f"OK=1\nPASSWORD='{SECRET}\n")
        return ".env:2"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "dangling current",
        "missing current",
        "current outside app root",
        "missing venv",
        "missing env file",
        "unparseable env line",
    ],
)
def test_broken_release_is_reported_with_host_and_path_and_nothing_runs(
    ssh_host: SshHost, how: str, tmp_path: Path
) -> None:
    expected = _break(ssh_host.app, how)
    flag = tmp_path / "ran"
    result = oneoff("-H", "web1", "--", "touch", str(flag), inventory=ssh_host.inventory)
    err = result.stderr.decode()
    assert result.returncode == 255, err
    assert err.startswith("oneoff: web1: ")
    assert expected in err
    assert "Traceback" not in err and SECRET not in err
    assert not flag.exists()


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root can read any file, so unreadable cannot be staged"
)
def test_unreadable_env_file_is_reported(ssh_host: SshHost) -> None:
    (ssh_host.app.shared / ".env").chmod(0)
    result = oneoff("-H", "web1", "--", "true", inventory=ssh_host.inventory)
    assert result.returncode == 255
    assert b"not readable" in result.stderr


def test_unknown_task_lists_known_ones(ssh_host: SshHost) -> None:
    result = oneoff("-H", "web1", "nosuchtask", inventory=ssh_host.inventory)
    assert result.returncode == 2
    assert b"unknown task 'nosuchtask'" in result.stderr
    assert b"known tasks" in result.stderr and b"shell" in result.stderr


def test_bad_inventory_is_refused_before_connecting(tmp_path: Path) -> None:
    path = tmp_path / "oneoff.yaml"
    path.write_text("hosts:\n  web1:\n    hostname: 127.0.0.1\n    colour: blue\n")
    result = oneoff("-H", "web1", "--", "true", inventory=path)
    assert result.returncode == 2
    assert f"{path}:4: hosts.web1.colour: unknown key".encode() in result.stderr


def test_unknown_target_is_a_usage_error(ssh_host: SshHost) -> None:
    result = oneoff("-H", "web9", "--", "true", inventory=ssh_host.inventory)
    assert result.returncode == 2
    assert b"web9" in result.stderr


def test_ssh_config_host_alias_is_honoured(
    sshd: SshServer,
    app: AppTree,
    write_inventory: WriteInventory,
    tmp_path: Path,
    client_key: ClientKey,
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host web1\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {client_key.private}\n"
    )
    inventory = write_inventory(
        {"web1": {"app_root": str(app.root)}},
        defaults={"ssh_config": str(config), "port": None, "user": None, "identity_file": None},
    )
    result = oneoff("-H", "web1", "--", "python", "-c", "print('via config')", inventory=inventory)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"via config\n"


def test_local_transport_runs_the_same_way(app: AppTree, tmp_path: Path) -> None:
    path = tmp_path / "local.yaml"
    path.write_text(f"hosts:\n  here: {{transport: local, app_root: {app.root}}}\n")
    result = oneoff(
        "-H",
        "here",
        "--",
        "python",
        "-c",
        "import os; print(os.environ['GREETING'])",
        inventory=path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello\n"


def test_proxyjump_from_ssh_config_is_honoured_and_both_host_keys_checked(
    sshd: SshServer,
    app: AppTree,
    write_inventory: WriteInventory,
    tmp_path: Path,
    client_key: ClientKey,
) -> None:
    from support.sshd import start_sshd

    jump = start_sshd(tmp_path / "jump", [client_key.public])
    try:
        config = tmp_path / "ssh_config"
        config.write_text(
            f"Host jump\n  HostName 127.0.0.1\n  Port {jump.port}\n  User {jump.user}\n"
            f"  IdentityFile {client_key.private}\n"
            f"Host web1\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
            f"  IdentityFile {client_key.private}\n  ProxyJump jump\n"
        )
        known = tmp_path / "known_hosts"
        known.write_text(sshd.known_hosts_line() + "\n")  # the jump host's key is missing
        assert "Accepted publickey" not in jump.log_text()
        inventory = write_inventory(
            {"web1": {"app_root": str(app.root)}},
            defaults={"ssh_config": str(config), "known_hosts": str(known),
                      "port": None, "user": None, "identity_file": None},
        )  # fmt: skip
        code = "import os; print(os.environ['SSH_CONNECTION'].split()[2])"
        refused = oneoff("-H", "web1", "--", "python", "-c", code, inventory=inventory)
        assert refused.returncode == 255
        assert f"[127.0.0.1]:{jump.port}".encode() in refused.stderr  # the jump host is checked
        known.write_text(sshd.known_hosts_line() + "\n" + jump.known_hosts_line() + "\n")
        result = oneoff("-H", "web1", "--", "python", "-c", code, inventory=inventory)
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"127.0.0.1\n"
        assert "Accepted publickey" in jump.log_text()  # we did log in to the jump host
    finally:
        jump.stop()


def test_missing_identity_file_is_named(
    app: AppTree, write_inventory: WriteInventory, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-key"
    inventory = write_inventory(
        {"web1": {"hostname": "127.0.0.1", "app_root": str(app.root)}},
        defaults={"identity_file": str(missing)},
    )
    result = oneoff("-H", "web1", "--", "true", inventory=inventory)
    assert result.returncode == 255
    assert f"web1: identity_file {missing} does not exist".encode() in result.stderr
