"""``app.run``: the pipeline the CLI and the API share, with a recording reporter.

Usage errors are checked before any connection; the runs use ``transport: local`` on
a release tree in a temporary folder (a subprocess, no sshd), so each takes a moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from support.release import make_app

from oneoff.app.run import Console, RunRequest, run
from oneoff.client.fleet import Interrupts
from oneoff.errors import DriftRefused, UsageError
from oneoff.outcome import HostResult
from oneoff.plan.probe import ResolvedRelease
from oneoff.values import RunSpec


class Recorder:
    """A RunReporter that writes down every call, in order."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.hosts = list(hosts)
        self.calls: list[tuple[Any, ...]] = []

    def started(self, host: str, release: ResolvedRelease, spec: RunSpec) -> None:
        self.calls.append(("started", host, spec.pty))

    def output(self, host: str, stream: str, data: bytes) -> None:
        self.calls.append(("output", host, stream, data))

    def notice(self, host: str, message: str) -> None:
        self.calls.append(("notice", host, message))

    def finished(self, result: HostResult) -> None:
        self.calls.append(("finished", result.host, result.exit_code))

    def close(self) -> None:
        self.calls.append(("close",))

    def summary(self, results: Sequence[HostResult], status: int) -> None:
        self.calls.append(("summary", [r.host for r in results], status))

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two local hosts; ``lag`` is one release behind (for the drift check)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    app = make_app(tmp_path / "a")
    lagging = make_app(tmp_path / "b", release_id="20261101T000000")
    path = tmp_path / "oneoff.yaml"
    path.write_text(
        "hosts:\n"
        f"  here: {{transport: local, app_root: {app.root}}}\n"
        f"  also: {{transport: local, app_root: {app.root}}}\n"
        f"  lag: {{transport: local, app_root: {lagging.root}}}\n"
        "groups:\n  pair: {hosts: [here, also]}\n  drifted: {hosts: [here, lag]}\n"
    )
    return path


class Reporters:
    def __init__(self) -> None:
        self.made: list[Recorder] = []

    def __call__(self, hosts: Sequence[str]) -> Recorder:
        self.made.append(Recorder(hosts))
        return self.made[-1]


def request(targets: str, *words: str, **changes: Any) -> RunRequest:
    return RunRequest(targets=(targets,), kind="command", words=words, **changes)


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (request("here", "true", lock="../etc"), "is not a lock name"),
        (request("here", "true", detach=True, tty=True), "--detach runs without a terminal"),
        (request("pair", "true", scope="all", tty=True), "cannot be shared by several hosts"),
        (request("pair", "true"), r"pass --all \(every host\) or --one"),
        (RunRequest(targets=("here",), kind="script", words=()), "run needs a script path"),
    ],
)
def test_usage_errors_come_before_any_reporter_or_run(
    inventory: Path, req: RunRequest, message: str
) -> None:
    reporters = Reporters()
    with pytest.raises(UsageError, match=message):
        run(req, inventory=inventory, reporters=reporters, interrupts=Interrupts())
    assert reporters.made == []


def test_one_host_reports_events_then_close_then_summary(inventory: Path) -> None:
    reporters = Reporters()
    req = request("here", "sh", "-c", "echo out; exit 3")
    outcome = run(req, inventory=inventory, reporters=reporters, interrupts=Interrupts())
    assert outcome.status == 3 and [r.host for r in outcome.results] == ["here"]
    (reporter,) = reporters.made
    assert reporter.hosts == ["here"]
    assert reporter.names() == ["started", "output", "finished", "close", "summary"]
    assert reporter.calls[1] == ("output", "here", "stdout", b"out\n")
    assert reporter.calls[-1] == ("summary", ["here"], 3)


def test_no_pty_without_someone_at_the_keyboard(inventory: Path) -> None:
    reporters = Reporters()
    console = Console(interactive=False, stdin_is_terminal=False)
    run(
        request("here", "true"),
        inventory=inventory,
        reporters=reporters,
        interrupts=Interrupts(),
        console=console,
    )
    assert reporters.made[0].calls[0] == ("started", "here", False)


def test_several_hosts_fold_into_one_status(inventory: Path) -> None:
    reporters = Reporters()
    req = request("pair", "sh", "-c", "exit 4", scope="all")
    outcome = run(req, inventory=inventory, reporters=reporters, interrupts=Interrupts())
    assert outcome.status == 1  # several hosts: some command failed
    assert reporters.made[0].calls[-1] == ("summary", ["here", "also"], 1)


def test_drift_refused_at_the_gate_is_summarised_then_raised(inventory: Path) -> None:
    reporters = Reporters()
    req = request("drifted", "true", scope="all")
    with pytest.raises(DriftRefused, match="different releases"):
        run(req, inventory=inventory, reporters=reporters, interrupts=Interrupts())
    (reporter,) = reporters.made
    assert "started" not in reporter.names()
    assert reporter.names()[-2:] == ["close", "summary"]
    assert reporter.calls[-1][2] == 2
