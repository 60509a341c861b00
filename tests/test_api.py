"""``oneoff.run`` from Python, as a scheduled maintenance script would call it."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.sshd import SshHost, WriteInventory

import oneoff
from oneoff.errors import UsageError


def test_run_returns_each_hosts_result_with_captured_output(two_hosts: Path) -> None:
    inventory = two_hosts
    results = oneoff.run(
        "web1,web2",
        ["sh", "-c", "echo out; echo err >&2; exit 4"],
        inventory=inventory,
        scope="all",
    )
    assert [r.host for r in results] == ["web1", "web2"]
    assert all(r.status == 4 and r.stdout == b"out\n" and r.stderr == b"err\n" for r in results)
    assert all(r.release_id == "20261128T120000" for r in results)
    assert not results.ok and results.exit_code == 1


def test_run_a_task_with_extra_env(ssh_host: SshHost, write_inventory: WriteInventory) -> None:
    inventory = write_inventory(
        {"web1": {"hostname": "127.0.0.1", "app_root": str(ssh_host.app.root)}},
        tasks={"greet": {"command": ["python", "-c", "import os; print(os.environ['WHO'])"]}},
    )
    results = oneoff.run("web1", task="greet", env={"WHO": "cron"}, inventory=inventory)
    assert results.ok and results.exit_code == 0
    assert results[0].stdout == b"cron\n"


def test_usage_errors_raise_before_anything_runs(ssh_host: SshHost) -> None:
    with pytest.raises(UsageError, match="exactly one of"):
        oneoff.run("web1", ["true"], task="x", inventory=ssh_host.inventory)
    with pytest.raises(UsageError, match="web9"):
        oneoff.run("web9", ["true"], inventory=ssh_host.inventory)


def test_host_failures_come_back_as_results_not_exceptions(ssh_host: SshHost) -> None:
    (ssh_host.app.root / "current").unlink()
    results = oneoff.run("web1", ["true"], inventory=ssh_host.inventory)
    assert results.exit_code == 255
    assert results[0].error is not None and "does not exist" in str(results[0].error)


def test_a_shell_string_command_is_refused_with_the_argv_to_use(ssh_host: SshHost) -> None:
    with pytest.raises(UsageError, match=r"\['python', '-V'\]"):
        oneoff.run("web1", "python -V", inventory=ssh_host.inventory)


def test_an_unknown_task_everywhere_raises(ssh_host: SshHost) -> None:
    with pytest.raises(UsageError, match="unknown task"):
        oneoff.run("web1", task="nosuchtask", inventory=ssh_host.inventory)
