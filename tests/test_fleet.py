"""One admin command, many hosts: 21 real sshd processes, each with its own app tree."""

from __future__ import annotations

import itertools
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.release import AppTree, make_app
from support.run import oneoff
from support.sshd import ClientKey, SshServer, start_sshd

HOSTS = 21


@dataclass
class Fleet:
    servers: list[SshServer]
    apps: list[AppTree]
    names: list[str]
    base: Path
    client_key: ClientKey
    known_hosts: Path

    def inventory(self, *, down: int = 0, tasks: dict[str, object] | None = None) -> Path:
        """An inventory of every host (web01..), plus *down* hosts whose port is closed."""
        hosts: dict[str, object] = {}
        for i, (name, server, app) in enumerate(
            zip(self.names, self.servers, self.apps, strict=True)
        ):
            hosts[name] = {
                "hostname": "127.0.0.1",
                "port": server.port,
                "app_root": str(app.root),
                "roles": ["web"] if i % 2 == 0 else ["worker"],
                **({"primary": True} if i == 3 else {}),
            }
        for i in range(down):
            hosts[f"down{i}"] = {
                "hostname": "127.0.0.1",
                "port": closed_port(),
                "app_root": "/srv/x",
            }
        document = {
            "defaults": {
                "user": self.servers[0].user,
                "identity_file": str(self.client_key.private),
                "known_hosts": str(self.known_hosts),
                "ssh_config": str(self.base / "no-ssh-config"),
                "connect_timeout": 5,
            },
            "hosts": hosts,
            "groups": {"prod": {"hosts": list(hosts)}},
            "tasks": tasks or {},
        }
        path = self.base / f"fleet-{down}-{len(tasks or {})}.yaml"
        path.write_text(json.dumps(document))
        return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, client_key: ClientKey) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("fleet")
    servers: list[SshServer] = []
    try:
        for i in range(HOSTS):
            servers.append(start_sshd(base / f"sshd{i}", [client_key.public]))
        known_hosts = base / "known_hosts"
        known_hosts.write_text("".join(s.known_hosts_line() + "\n" for s in servers))
        apps = [make_app(base / f"host{i}") for i in range(HOSTS)]
        names = [f"web{i:02d}" for i in range(HOSTS)]
        yield Fleet(servers, apps, names, base, client_key, known_hosts)
    finally:
        for server in servers:
            server.stop()


def release_dir(app: AppTree) -> Path:
    return app.release("20261128T120000")


def lines_by_host(stdout: bytes) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in stdout.decode().splitlines():
        match = re.fullmatch(r"\[(\w+)\]\s+(.*)", line)
        assert match, f"unprefixed line: {line!r}"
        found.setdefault(match.group(1), []).append(match.group(2))
    return found


def test_all_hosts_run_and_a_down_host_is_reported(fleet: Fleet) -> None:
    inventory = fleet.inventory(down=1)
    result = oneoff(
        "-H", "prod", "--all", "--", "python", "-c", "import os; print(os.environ['GREETING'])",
        inventory=inventory,
    )  # fmt: skip
    assert result.returncode == 255, result.stderr  # one could not run, none failed otherwise
    by_host = lines_by_host(result.stdout)
    assert sorted(by_host) == sorted(fleet.names)
    assert all(lines == ["hello"] for lines in by_host.values())
    err = result.stderr.decode()
    assert "down0: connection refused" in err
    assert f"{HOSTS + 1} hosts: {HOSTS} ok, 1 could not run" in err


def test_json_event_stream_is_complete_and_nothing_else_is_on_stdout(fleet: Fleet) -> None:
    inventory = fleet.inventory(down=1)
    result = oneoff(
        "-H", "prod", "--all", "--json", "--", "sh", "-c", "echo out; echo err >&2; exit 3",
        inventory=inventory,
    )  # fmt: skip
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds: dict[str, list[dict[str, object]]] = {}
    for event in events:
        kinds.setdefault(str(event["event"]), []).append(event)
    assert set(kinds) == {"start", "output", "exit", "summary"}
    assert len(kinds["start"]) == HOSTS
    assert len(kinds["exit"]) == HOSTS + 1
    outputs = {(e["host"], e["stream"], e["text"]) for e in kinds["output"]}
    for name in fleet.names:
        assert (name, "stdout", "out\n") in outputs and (name, "stderr", "err\n") in outputs
    statuses = {e["host"]: e["status"] for e in kinds["exit"]}
    assert {statuses[n] for n in fleet.names} == {3}
    down = next(e for e in kinds["exit"] if e["host"] == "down0")
    assert down["status"] is None and "connection refused" in str(down["error"])
    assert events[-1]["event"] == "summary"
    assert events[-1]["exit_code"] == result.returncode == 1
    assert events[-1]["counts"] == {"ok": 0, "failed": HOSTS, "could_not_run": 1, "not_started": 0}


def test_once_task_runs_on_the_primary_only(fleet: Fleet) -> None:
    inventory = fleet.inventory(tasks={"mark": {"command": ["touch", "ran-here"], "run": "once"}})
    result = oneoff("-H", "prod", "mark", inventory=inventory)
    assert result.returncode == 0, result.stderr
    ran = [name for name, app in zip(fleet.names, fleet.apps, strict=True)
           if (release_dir(app) / "ran-here").exists()]  # fmt: skip
    assert ran == ["web03"]  # the host marked primary
    (release_dir(fleet.apps[3]) / "ran-here").unlink()
    audit = (fleet.apps[3].state_dir / "audit.jsonl").read_text()
    assert '"host": "web03"' in audit and "touch ran-here" in audit


def test_each_task_runs_everywhere(fleet: Fleet) -> None:
    inventory = fleet.inventory(tasks={"hi": {"command": ["echo", "hi"], "run": "each"}})
    result = oneoff("-H", "role:web", "hi", inventory=inventory)
    assert result.returncode == 0, result.stderr
    assert sorted(lines_by_host(result.stdout)) == fleet.names[::2]


def test_raw_command_on_several_hosts_needs_all_or_one(fleet: Fleet) -> None:
    result = oneoff("-H", "prod", "--", "true", inventory=fleet.inventory())
    assert result.returncode == 2
    assert b"pass --all (every host) or --one (its primary)" in result.stderr


def test_drift_is_refused_with_the_table_then_allowed(fleet: Fleet) -> None:
    lagging = fleet.apps[5]
    lagging.add_release("20261201T090000")  # a deploy that reached one host only
    try:
        inventory = fleet.inventory(tasks={"hi": {"command": ["echo", "hi"]}})
        for args in (["hi"], ["--all", "--", "echo", "hi"], ["--one", "--", "echo", "hi"]):
            refused = oneoff("-H", "prod", *args, inventory=inventory)
            assert refused.returncode == 2, (args, refused.stderr)
            err = refused.stderr.decode()
            assert "different releases" in err
            assert re.search(r"web05\s+20261201T090000", err)
            assert re.search(r"web00\s+20261128T120000", err)
            assert refused.stdout == b""
        allowed = oneoff(
            "-H", "prod", "--all", "--allow-drift", "--", "echo", "hi", inventory=inventory
        )
        assert allowed.returncode == 0
        assert len(lines_by_host(allowed.stdout)) == HOSTS
    finally:
        lagging.set_current("20261128T120000")


def test_batches_run_one_after_another_in_host_order(fleet: Fleet) -> None:
    code = "import time; print('start', time.time()); time.sleep(0.3); print('end', time.time())"
    result = oneoff(
        "-H", "prod", "--all", "--batch", "5", "--", "python", "-c", code,
        inventory=fleet.inventory(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    by_host = lines_by_host(result.stdout)
    times = {h: {ln.split()[0]: float(ln.split()[1]) for ln in by_host[h]} for h in by_host}
    batches = [fleet.names[i : i + 5] for i in range(0, HOSTS, 5)]
    for earlier, later in itertools.pairwise(batches):
        assert max(times[h]["end"] for h in earlier) <= min(times[h]["start"] for h in later)


def test_fail_fast_starts_no_new_host_after_a_failure(fleet: Fleet) -> None:
    result = oneoff(
        "-H", "prod", "--all", "--parallel", "1", "--fail-fast", "--", "false",
        inventory=fleet.inventory(),
    )  # fmt: skip
    assert result.returncode == 1
    err = result.stderr.decode()
    assert f"{HOSTS} hosts: 1 failed, {HOSTS - 1} not started" in err
    assert err.count("not started (an earlier host failed)") == HOSTS - 1


def test_max_fail_tolerates_that_many_failures(fleet: Fleet) -> None:
    result = oneoff(
        "-H", "prod", "--all", "--parallel", "1", "--max-fail", "2", "--", "false",
        inventory=fleet.inventory(),
    )  # fmt: skip
    assert result.returncode == 1
    assert f"{HOSTS} hosts: 3 failed, {HOSTS - 3} not started".encode() in result.stderr


def test_prefix_never_splits_a_line_between_hosts(fleet: Fleet) -> None:
    code = (
        "import os, sys\n"
        "tag = os.environ['ONEOFF_RUN_ID'][-6:]\n"
        "for i in range(300):\n"
        "    sys.stdout.write(tag * 1500 + '\\n')\n"
        "sys.stdout.write(tag + '-partial')\n"
    )
    result = oneoff("-H", "prod", "--all", "--", "python", "-c", code, inventory=fleet.inventory())
    assert result.returncode == 0, result.stderr
    for host, lines in lines_by_host(result.stdout).items():
        assert len(lines) == 301, host
        tag = lines[-1].removesuffix("-partial")
        assert len(tag) == 6 and lines[-1] == tag + "-partial"
        assert all(line == tag * 1500 for line in lines[:-1]), host


def test_hosts_lists_groups_roles_and_primary(fleet: Fleet) -> None:
    result = oneoff("hosts", "-H", "role:worker", "--json", inventory=fleet.inventory())
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["host"] for r in records] == fleet.names[1::2]
    assert records[1]["primary"] is True and records[1]["groups"] == ["prod"]


def test_unknown_target_names_what_exists(fleet: Fleet) -> None:
    result = oneoff("-H", "webz*", "--all", "--", "true", inventory=fleet.inventory())
    assert result.returncode == 2
    assert b"webz*" in result.stderr and b"web00" in result.stderr
