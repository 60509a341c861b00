"""Detached runs: start now, look later; the run outlives the client and the connection."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

from support.run import oneoff, processes_with, wait_for
from support.sshd import SshHost


def detach(ssh_host: SshHost, *command: str, extra: tuple[str, ...] = ()) -> str:
    result = oneoff("-H", "web1", "--detach", *extra, "--", *command, inventory=ssh_host.inventory)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.decode()
    assert run_id.endswith("\n") and run_id.count("\n") == 1  # the id alone on stdout
    return run_id.strip()


def ps(ssh_host: SshHost) -> dict[str, dict[str, object]]:
    result = oneoff("ps", "-H", "web1", "--json", inventory=ssh_host.inventory)
    assert result.returncode == 0, result.stderr
    return {r["run_id"]: r for r in map(json.loads, result.stdout.splitlines())}


def test_detached_run_outlives_the_client_and_logs_follow_returns_its_status(
    ssh_host: SshHost, tmp_path: Path
) -> None:
    marker = f"oneoff-detached-{os.getpid()}-{time.monotonic_ns()}"
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        "for i in range(4):\n"
        "    print('tick', i, flush=True)\n"
        "    while i == 1 and not os.path.exists(sys.argv[1]):\n"
        "        time.sleep(0.05)\n"
        "sys.exit(3)"
    )
    run_id = detach(ssh_host, "python", "-c", code, str(go), marker)
    try:
        # the client has exited; the run goes on, its log growing
        assert wait_for(lambda: bool(processes_with(marker)))
        log = ssh_host.app.state_dir / "runs" / f"{run_id}.log"
        assert wait_for(lambda: log.exists() and b"tick 1" in log.read_bytes())
        assert ps(ssh_host)[run_id]["state"] == "running"
    finally:
        go.touch()  # lets the run finish, even when an assertion above failed
    follow = oneoff("logs", "-H", "web1", run_id, "-f", inventory=ssh_host.inventory)
    assert follow.returncode == 3
    assert follow.stdout == b"".join(b"tick %d\n" % i for i in range(4))
    ended = ps(ssh_host)[run_id]
    assert ended["state"] == "ended" and ended["status"] == 3
    assert processes_with(marker) == []
    stamped = oneoff("logs", "-H", "web1", run_id, "--timestamps", inventory=ssh_host.inventory)
    assert stamped.returncode == 0
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT[\d:.]+Z o tick 0", stamped.stdout.splitlines()[0])


def test_kill_stops_the_run_and_ps_shows_the_signal(ssh_host: SshHost) -> None:
    marker = f"oneoff-kill-{os.getpid()}-{time.monotonic_ns()}"
    run_id = detach(ssh_host, "python", "-c", "import time; time.sleep(120)", marker)
    assert wait_for(lambda: bool(processes_with(marker)))
    killed = oneoff("kill", "-H", "web1", run_id, inventory=ssh_host.inventory)
    assert killed.returncode == 0, killed.stderr
    assert b"stopped (killed by SIGTERM)" in killed.stderr
    assert processes_with(marker) == []
    record = ps(ssh_host)[run_id]
    assert record["state"] == "ended" and record["signal"] == "SIGTERM"
    again = oneoff("kill", "-H", "web1", run_id, inventory=ssh_host.inventory)
    assert again.returncode == 0
    assert b"already ended" in again.stderr


def test_a_run_killed_with_sigkill_is_shown_as_lost(ssh_host: SshHost) -> None:
    marker = f"oneoff-lost-{os.getpid()}-{time.monotonic_ns()}"
    run_id = detach(ssh_host, "python", "-c", "import time; time.sleep(120)", marker)
    status = json.loads((ssh_host.app.state_dir / "runs" / f"{run_id}.json").read_text())
    os.kill(int(status["pid"]), signal.SIGKILL)  # as a reboot would: no end record written
    assert wait_for(lambda: processes_with(marker) == [])  # the command dies with its agent
    assert ps(ssh_host)[run_id]["state"] == "lost"
    follow = oneoff("logs", "-H", "web1", run_id, "-f", inventory=ssh_host.inventory, timeout=30)
    assert follow.returncode == 255
    assert b"lost" in follow.stderr


def test_lock_and_timeout_hold_for_the_whole_detached_run(ssh_host: SshHost) -> None:
    run_id = detach(ssh_host, "sleep", "30", extra=("--lock", "backfill", "--timeout", "5s"))
    busy = oneoff("-H", "web1", "--lock", "backfill", "--", "true", inventory=ssh_host.inventory)
    assert busy.returncode == 75
    assert run_id.encode() in busy.stderr  # the holder is named
    assert wait_for(lambda: ps(ssh_host)[run_id]["state"] == "ended", timeout=30)
    assert ps(ssh_host)[run_id]["timed_out"] is True
    free = oneoff("-H", "web1", "--lock", "backfill", "--", "true", inventory=ssh_host.inventory)
    assert free.returncode == 0


def test_old_finished_runs_are_pruned_when_a_new_one_starts(ssh_host: SshHost) -> None:
    runs = ssh_host.app.state_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    old = runs / "20200101T000000Z-aaaaaa"
    old.with_suffix(".json").write_text(json.dumps({"state": "ended", "run_id": old.name}))
    old.with_suffix(".log").write_text("old output\n")
    ancient = time.time() - 40 * 86400
    os.utime(old.with_suffix(".json"), (ancient, ancient))
    run_id = detach(ssh_host, "true")
    assert not old.with_suffix(".json").exists() and not old.with_suffix(".log").exists()
    assert (runs / f"{run_id}.json").exists()


def test_unknown_run_id_lists_recent_ones(ssh_host: SshHost) -> None:
    run_id = detach(ssh_host, "true")
    for command in ("logs", "kill"):
        result = oneoff(
            command, "-H", "web1", "20991231T000000Z-ffffff", inventory=ssh_host.inventory
        )
        assert result.returncode == 2
        assert b"no run" in result.stderr and run_id.encode() in result.stderr


def test_detach_with_a_terminal_is_refused(ssh_host: SshHost) -> None:
    result = oneoff("-H", "web1", "--detach", "-t", "--", "true", inventory=ssh_host.inventory)
    assert result.returncode == 2
    assert b"--detach runs without a terminal" in result.stderr


def test_several_hosts_print_host_tab_id(two_hosts: Path) -> None:
    inventory = two_hosts
    result = oneoff("-H", "web1,web2", "--all", "--detach", "--", "true", inventory=inventory)
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.decode().splitlines()]
    assert [host for host, _ in lines] == ["web1", "web2"]
    assert all(len(run_id) > 10 for _, run_id in lines)


def test_a_detached_command_that_cannot_start_is_an_error_at_once(ssh_host: SshHost) -> None:
    result = oneoff("-H", "web1", "--detach", "--", "nosuchcmd", inventory=ssh_host.inventory)
    assert result.returncode == 127
    assert result.stdout == b""
    assert b"cannot run nosuchcmd" in result.stderr
