"""One SSH connection per host per invocation, counted in the real sshd's own log.

The probe pass (drift check, once/each), the release gate and the run share each host's
connection: `oneoff -H prod migrate` on two hosts logs in exactly twice, a one-host run
once. sshd logs ``Accepted publickey`` once per login (LogLevel VERBOSE).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.run import oneoff
from support.sshd import SshHost, WriteInventory

LOGIN = "Accepted publickey"


def _logins_during(ssh_host: SshHost, action: Callable[[], object]) -> int:
    before = ssh_host.sshd.log_text().count(LOGIN)
    action()
    return ssh_host.sshd.log_text().count(LOGIN) - before


@pytest.fixture
def prod(ssh_host: SshHost, write_inventory: WriteInventory) -> Path:
    """web1 (primary) and web2 in group prod, with a `once` task and an `each` task."""
    root = str(ssh_host.app.root)
    return write_inventory(
        {
            "web1": {"hostname": "127.0.0.1", "app_root": root, "primary": True},
            "web2": {"hostname": "127.0.0.1", "app_root": root},
        },
        groups={"prod": {"hosts": ["web1", "web2"]}},
        tasks={
            "migrate": {"command": "python -c pass", "run": "once", "lock": "migrate"},
            "warm": {"command": "python -c pass", "run": "each"},
        },
    )


def _ok(*args: str, inventory: Path) -> None:
    result = oneoff(*args, inventory=inventory)
    assert result.returncode == 0, result.stderr.decode()


def test_a_once_task_on_two_hosts_logs_in_once_per_host(ssh_host: SshHost, prod: Path) -> None:
    # both hosts are probed for drift, the primary runs it: two logins, not three
    assert _logins_during(ssh_host, lambda: _ok("-H", "prod", "migrate", inventory=prod)) == 2


def test_an_each_task_on_two_hosts_logs_in_once_per_host(ssh_host: SshHost, prod: Path) -> None:
    assert _logins_during(ssh_host, lambda: _ok("-H", "prod", "warm", inventory=prod)) == 2


def test_a_command_on_all_hosts_logs_in_once_per_host(ssh_host: SshHost, prod: Path) -> None:
    run = lambda: _ok("-H", "prod", "--all", "--", "true", inventory=prod)  # noqa: E731
    assert _logins_during(ssh_host, run) == 2


def test_a_rolling_run_logs_in_once_per_host(ssh_host: SshHost, prod: Path) -> None:
    # --batch takes the probe pass before the run: still one connection per host
    run = lambda: _ok("-H", "prod", "--all", "--batch", "1", "--", "true", inventory=prod)  # noqa: E731
    assert _logins_during(ssh_host, run) == 2


def test_a_single_host_run_logs_in_once(ssh_host: SshHost) -> None:
    run = lambda: _ok("-H", "web1", "--", "true", inventory=ssh_host.inventory)  # noqa: E731
    assert _logins_during(ssh_host, run) == 1
