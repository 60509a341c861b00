"""Network faults on a real link: a cable cut mid-run, a host that is down, a slow link,
a short outage. Each test gets its own network namespace with a real OpenSSH sshd in it,
joined to ours by a veth pair (``support.netns``); faults are queueing disciplines on
that pair. Root only: skipped with the reason elsewhere (or where ``ip netns add`` is
refused, as in a restricted container). Traffic never leaves the pair's /30.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.netns import VethLink, create_link, netns_unavailable_reason
from support.release import AppTree, make_app
from support.run import oneoff, processes_with, spawn, wait_for
from support.sshd import ClientKey, SshServer, process_tree, start_sshd

pytestmark = [pytest.mark.slow, pytest.mark.netns]

SSH_PORT = 2222  # any port: the namespace is ours alone


@pytest.fixture(scope="module")
def netns_available() -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def link(netns_available: None) -> Iterator[VethLink]:
    """A fresh namespace and veth pair; deleted (with whatever runs there) afterwards."""
    made = create_link()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def server(link: VethLink, tmp_path: Path, client_key: ClientKey) -> Iterator[SshServer]:
    """A real sshd inside the namespace, on its end of the veth pair."""
    started = start_sshd(
        tmp_path / "sshd",
        [client_key.public],
        listen=link.ns_addr,
        port=SSH_PORT,
        command_prefix=link.exec_prefix(),
    )
    try:
        yield started
    finally:
        started.stop()


@dataclass(frozen=True)
class Remote:
    link: VethLink
    server: SshServer
    app: AppTree
    tmp_path: Path
    client_key: ClientKey

    def inventory(self, **settings: object) -> Path:
        """An inventory with one host ``web1`` (this namespace's sshd) and *settings*."""
        known_hosts = self.tmp_path / "known_hosts"
        known_hosts.write_text(self.server.known_hosts_line() + "\n")
        defaults = {
            "user": self.server.user,
            "port": self.server.port,
            "identity_file": str(self.client_key.private),
            "known_hosts": str(known_hosts),
            "ssh_config": str(self.tmp_path / "no-such-ssh-config"),
            "connect_timeout": 5,
            **settings,
        }
        hosts = {"web1": {"hostname": self.link.ns_addr, "app_root": str(self.app.root)}}
        path = self.tmp_path / "oneoff.yaml"
        path.write_text(json.dumps({"defaults": defaults, "hosts": hosts}, indent=2) + "\n")
        return path


@pytest.fixture
def remote(link: VethLink, server: SshServer, tmp_path: Path, client_key: ClientKey) -> Remote:
    return Remote(link, server, make_app(tmp_path), tmp_path, client_key)


def python(code: str, *extra: str) -> list[str]:
    return ["--", "python", "-c", code, *extra]


def under_sshd(server: SshServer) -> list[int]:
    """Processes below the namespace's sshd listener (its connections and what they run)."""
    return process_tree(server.pid)[1:]


# ------------------------------------------------------------------------------ tests


WHILE_CUT = {
    # what the command does when the link is cut
    "idle": "time.sleep(120)",
    "ignores-SIGTERM": "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)",
    "streaming": "while True: sys.stdout.write('x' * 1023 + '\\n'); time.sleep(0.001)",
}


@pytest.mark.parametrize("behaviour", list(WHILE_CUT))
def test_link_cut_mid_run_is_detected_and_the_remote_command_is_stopped(
    remote: Remote, behaviour: str
) -> None:
    marker = f"oneoff-netns-{uuid.uuid4()}"
    inventory = remote.inventory(alive_interval=1, alive_count_max=3, kill_after=2)
    code = f"import signal, sys, time\nprint('ready', flush=True)\n{WHILE_CUT[behaviour]}\n"
    proc = spawn("-H", "web1", *python(code, marker), inventory=inventory)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line == b"ready\n", (line, proc.stderr.read())
        assert processes_with(marker), "the command should run in the namespace"
        drain = threading.Thread(target=proc.stdout.read, daemon=True)  # keep oneoff writing
        drain.start()
        if behaviour == "streaming":
            time.sleep(0.5)  # in full flow
        remote.link.cut()
        cut_at = time.monotonic()
        status = proc.wait(timeout=15)
        noticed = time.monotonic() - cut_at
        stderr = proc.stderr.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 255, stderr
    assert "connection lost" in stderr and "web1" in stderr, stderr
    assert 1.5 < noticed < 15, f"the client gave up {noticed:.1f}s after the cut"
    # The agent on the far side of the cut hears no heartbeat either, and stops the command
    # (SIGTERM after 3s of silence; SIGKILL kill_after=2s later if that was ignored).
    assert wait_for(lambda: not processes_with(marker), timeout=15), processes_with(marker)
    stopped = time.monotonic() - cut_at
    assert stopped < 15, f"the remote command lived {stopped:.1f}s after the cut"
    # ... and then ends itself: below sshd, only sshd's own (stuck) connection process is left.
    assert wait_for(
        lambda: all("sshd" in _comm(pid) for pid in under_sshd(remote.server)), timeout=10
    ), [(pid, _comm(pid)) for pid in under_sshd(remote.server)]
    # Its audit record says why: the client was lost (sshd never noticed the dead link).
    audit = remote.app.state_dir / "audit.jsonl"
    ends = [r for r in map(json.loads, audit.read_text().splitlines()) if r["type"] == "end"]
    assert len(ends) == 1, ends
    assert ends[0]["client_lost"] is True, ends[0]
    assert str(ends[0].get("stop_reason", "")).startswith("client lost"), ends[0]


def test_host_that_is_down_is_reported_after_connect_timeout(remote: Remote) -> None:
    inventory = remote.inventory(connect_timeout=2)
    remote.link.cut()  # the route is there; nothing answers
    started = time.monotonic()
    result = oneoff("-H", "web1", "--", "true", inventory=inventory, timeout=60)
    took = time.monotonic() - started
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 255, stderr
    assert "web1" in stderr and "timed out" in stderr, stderr
    assert remote.link.ns_addr in stderr, stderr
    assert result.stdout == b""
    assert 1.5 < took < 15, f"took {took:.1f}s with connect_timeout 2"


def test_slow_link_still_delivers_every_byte(remote: Remote) -> None:
    inventory = remote.inventory(alive_interval=1, alive_count_max=3)
    # 50 ms each way where the kernel has netem; a plain 8 mbit/s token bucket (whose queue,
    # up to 400 ms, also delays the heartbeats behind bulk output) where it has not.
    how = remote.link.shape(delay_ms=50, rate="8mbit")
    print(f"slow link: {how}", file=sys.stderr)
    size = 2 * 1024 * 1024
    code = (
        "import sys; chunk = bytes(range(256)) * 256; "
        f"[sys.stdout.buffer.write(chunk) for _ in range({size} // len(chunk))]; "
        "sys.stdout.flush(); sys.exit(3)"
    )
    started = time.monotonic()
    result = oneoff("-H", "web1", *python(code), inventory=inventory, timeout=60)
    took = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert len(result.stdout) == size
    assert result.stdout == bytes(range(256)) * (size // 256)
    assert took > 1.5, f"{size} bytes at 8 mbit/s in {took:.1f}s: was the link shaped?"

    # Silence is not death: heartbeats keep a quiet command alive over the slow link.
    quiet = python("import time; time.sleep(5); print('still here')")
    started = time.monotonic()
    result = oneoff("-H", "web1", *quiet, inventory=inventory, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"still here\n"
    assert time.monotonic() - started >= 5


def test_paused_link_shorter_than_the_limit_is_survived(remote: Remote) -> None:
    inventory = remote.inventory(alive_interval=1, alive_count_max=5)
    code = (
        "import time\n"
        "print('ready', flush=True)\n"
        "for i in range(40):\n"
        "    print('line', i, flush=True)\n"
        "    time.sleep(0.1)\n"
        "print('done')\n"
    )
    proc = spawn("-H", "web1", *python(code), inventory=inventory)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        assert first == b"ready\n", (first, proc.stderr.read())
        remote.link.cut()
        time.sleep(1.5)
        remote.link.restore()
        rest, stderr = finish(proc, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    expected = "".join(f"line {i}\n" for i in range(40)) + "done\n"
    assert rest.decode() == expected
    assert stderr == b""


def finish(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bytes]:
    """The rest of its stdout and stderr (through the pipes' own buffers, which already
    hold what ``readline`` read ahead) once it exits; kill it after *timeout* seconds."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout, proc.stderr
    got: dict[str, bytes] = {}
    reader = threading.Thread(target=lambda: got.update(err=err.read()), daemon=True)
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        got["out"] = out.read()
        reader.join()
        proc.wait()
    finally:
        timer.cancel()
    return got["out"], got["err"]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
