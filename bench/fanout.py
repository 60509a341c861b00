"""Fan-out: one admin command on every host of a fleet of real sshd servers on loopback,
``oneoff -H all --all --parallel N`` against ``xargs -P N ssh ...`` doing the same work
(cd into the host's release, load its .env, exec the venv's python), alternated.

    python bench/fanout.py [--hosts 100] [--rounds 3] [--scaling 10,100,200]
                           [--other-rounds 1] [--no-login-rc] [--run-timeout 180]

Every host has its own sshd, host key and app tree; one client key and one known_hosts
file serve all of them. The command prints the host's release directory (its working
directory) and a variable from its .env, so every host's output is checked, for both
tools, in every run: a missing, extra, duplicated or wrong line exits 1, as does a run
that fails or hangs (killed after --run-timeout); a wrong run's whole stdout and stderr
are kept in a /tmp/oneoff-bench-fanout-failed-*.log file. Every sshd is stopped at the end
and any process left behind is reported (exit 1).

Reports, at --hosts hosts and --parallel equal to the host count, --rounds alternated
rounds: the median wall time of each, the median of the per-round ratios oneoff/OpenSSH
(target <= 0.6) and the oneoff client's peak RSS from ``os.wait4`` (target <= 250 MB).
Then, --other-rounds rounds each, the same pair at ``--parallel 32`` (oneoff's default)
and at each --scaling size (all servers are started once; a size uses the first K).

The client and every "host" share this machine's CPUs, so wall time follows the total CPU
per host. It is split into the client's (the process and all it reaped: for OpenSSH,
xargs and every ssh) and the host side's (every sshd connection process and its children:
login shell, probe, agent, command; from the sshd listeners' cutime+cstime). All hosts
share this account's login rc; --no-login-rc starts the servers with ``SetEnv SHLVL=1``,
so bash skips ~/.bashrc (which may serialize the hosts, e.g. on pyenv rehash's lock).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import resource
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Bench,
    Measured,
    fmt_ratio,
    login_shell_ms,
    median,
    oneoff_command,
    run_measured,
)
from support.release import AppTree, make_app
from support.sshd import ClientKey, SshServer, make_client_key, process_tree, start_sshd

RATIO_TARGET = 0.6
RSS_TARGET_MB = 250.0
ONEOFF_DEFAULT_PARALLEL = 32
CODE = "import os; print(os.getcwd(), os.environ['GREETING'])"
GREETING = "hello"  # support.release.DEFAULT_SHARED_ENV
LINE = re.compile(r"\[(?P<host>[^\]\s]+)\]\s+(?P<text>.*)")


# --------------------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    """``len(servers)`` sshd servers, each with its own app tree; sizes use the first K."""

    base: Path
    key: ClientKey
    known_hosts: Path
    servers: list[SshServer]
    apps: list[AppTree]
    names: list[str]
    _inventories: dict[int, Path] = field(default_factory=dict)
    _xargs_input: dict[int, Path] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """Ours, minus ONEOFF_INVENTORY; oneoff's local audit journal and inventory cache
        go to the temporary directory instead of this account's home."""
        env = dict(os.environ)
        env.pop("ONEOFF_INVENTORY", None)
        env["XDG_STATE_HOME"] = str(self.base / "state")
        env["XDG_CACHE_HOME"] = str(self.base / "cache")
        return env

    def host_bench(self, i: int) -> Bench:
        """_common's one-host view of host ``i`` (for its ssh argv and release one-liner)."""
        return Bench(
            base=self.base,
            server=self.servers[i],
            key=self.key,
            known_hosts=self.known_hosts,
            app=self.apps[i],
            inventory=self.inventory(len(self.servers)),
            host=self.names[i],
        )

    def inventory(self, k: int) -> Path:
        """An inventory of the first ``k`` hosts (JSON, which is YAML)."""
        if k not in self._inventories:
            hosts = {
                self.names[i]: {
                    "hostname": self.servers[i].host,
                    "port": self.servers[i].port,
                    "app_root": str(self.apps[i].root),
                }
                for i in range(k)
            }
            document = {
                "defaults": {
                    "user": self.servers[0].user,
                    "identity_file": str(self.key.private),
                    "known_hosts": str(self.known_hosts),
                    "ssh_config": str(self.base / "no-such-ssh-config"),
                    "connect_timeout": 10,
                },
                "hosts": hosts,
            }
            path = self.base / f"oneoff-{k}.yaml"
            path.write_text(json.dumps(document, indent=1) + "\n")
            self._inventories[k] = path
        return self._inventories[k]

    def oneoff(self, k: int, parallel: int) -> list[str]:
        return [
            *oneoff_command(),
            "-i",
            str(self.inventory(k)),
            "-H",
            "all",
            "--all",
            "--parallel",
            str(parallel),
            "--",
            "python",
            "-c",
            CODE,
        ]

    def ssh_words(self, i: int) -> list[str]:
        """Host ``i``'s whole ``ssh`` argv (_common.ssh_argv plus the release one-liner)."""
        bench = self.host_bench(i)
        return bench.ssh(bench.in_release(shlex.join([".venv/bin/python", "-c", CODE])))

    def xargs(self, k: int, parallel: int) -> tuple[list[str], Path]:
        """``xargs -0 -x -n M -P N ssh`` and its NUL-separated input: each host's ssh
        arguments, M of them (the same count for every host), one ssh per host."""
        per_host = [self.ssh_words(i)[1:] for i in range(k)]
        counts = {len(words) for words in per_host}
        if len(counts) != 1:
            raise RuntimeError(f"ssh argument counts differ between hosts: {counts}")
        if k not in self._xargs_input:
            path = self.base / f"xargs-{k}.in"
            path.write_bytes(b"".join(w.encode() + b"\0" for words in per_host for w in words))
            self._xargs_input[k] = path
        argv = ["xargs", "-0", "-x", "-n", str(counts.pop()), "-P", str(parallel), "ssh"]
        return argv, self._xargs_input[k]

    def expected(self, k: int) -> dict[str, str]:
        """Host name -> the one line its command prints."""
        return {self.names[i]: f"{self.apps[i].current.resolve()} {GREETING}" for i in range(k)}


@contextlib.contextmanager
def fleet_env(count: int, *, login_rc: bool = True) -> Iterator[Fleet]:
    """Start ``count`` sshd servers and app trees in a temporary directory; always stop
    every server and remove the directory, then look for processes left behind."""
    base = Path(tempfile.mkdtemp(prefix="oneoff-bench-fanout-"))
    servers: list[SshServer] = []
    # bash reads ~/.bashrc when sshd starts it (SSH_CLIENT set) and SHLVL says top level;
    # SHLVL=1 in the session makes it a nested shell, which does not.
    extra = "" if login_rc else "SetEnv SHLVL=1"
    try:
        key = make_client_key(base / "keys")
        started = time.perf_counter()
        for i in range(count):
            servers.append(start_sshd(base / f"sshd{i:03d}", [key.public], extra_config=extra))
        apps = [make_app(base / f"host{i:03d}") for i in range(count)]
        known_hosts = base / "known_hosts"
        known_hosts.write_text("".join(s.known_hosts_line() + "\n" for s in servers))
        width = len(str(count - 1))
        names = [f"h{i:0{width}d}" for i in range(count)]
        print(
            f"set-up: {count} sshd servers and app trees in {time.perf_counter() - started:.1f} s"
            f" ({base})",
            flush=True,
        )
        yield Fleet(base, key, known_hosts, servers, apps, names)
    finally:
        descendants = {p for s in servers if s.is_running() for p in process_tree(s.pid)}
        for server in servers:
            server.stop()
        _leftovers(base, descendants)
        shutil.rmtree(base, ignore_errors=True)


LEFTOVERS: list[str] = []


def _leftovers(base: Path, known: set[int]) -> None:
    """Record live processes that are ours: a pid seen under one of our sshd servers, or
    one whose command line or working directory is inside ``base``."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rfind(")") + 2] in "ZX":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                cwd = ""
        except OSError:
            continue
        if pid in known or str(base) in cmdline or cwd.startswith(str(base)):
            LEFTOVERS.append(f"pid {pid}: {cmdline.strip()} (cwd {cwd})")


# --------------------------------------------------------------------------- measuring


TICKS = os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every CPU from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def _stat(pid: int | str) -> list[str] | None:
    """/proc/PID/stat from the state field on (index 0 is field 3), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _reaped_cpu(pids: list[int]) -> float:
    """CPU seconds of every process the sshd listeners ``pids`` have reaped so far: each
    connection's sshd processes, login shell, probe and command, as each waits for its own
    children (cutime + cstime, fields 16 and 17)."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[13]) + int(fields[14])
    return total / TICKS


def _wait_sessions_gone(listeners: set[int], timeout: float = 10.0) -> None:
    """Wait until no listener has a child left (every connection's sshd reaped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = False
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                fields = _stat(entry.name)
                if fields is not None and int(fields[1]) in listeners:
                    busy = True
                    break
        if not busy:
            return
        time.sleep(0.02)


@dataclass(frozen=True)
class Run:
    result: Measured
    cpu: float
    """User+system seconds of the child and of every descendant it reaped."""
    host_cpu: float
    """CPU seconds the hosts' side used: every sshd connection process and its children."""
    machine_cores: float
    """Average busy CPUs of the whole machine during the run (anyone's processes)."""


def _kill_tree(pid: int) -> None:
    for p in reversed(process_tree(pid)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)


def measure(
    argv: list[str], fleet: Fleet, stdin_path: Path | None, timeout: float
) -> tuple[Run, bytes, bool]:
    """Run ``argv`` once (stdout collected); kill it and its tree after ``timeout``."""
    out = bytearray()
    ours = {s.pid for s in fleet.servers}
    hung = threading.Event()

    def watchdog() -> None:
        # Our only child that is not an sshd server is the measured one.
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in ours:
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[1]) == os.getpid() and fields[0] not in "ZX":
                hung.set()
                _kill_tree(int(entry.name))

    listeners = [server.pid for server in fleet.servers]
    _wait_sessions_gone(set(listeners))
    timer = threading.Timer(timeout, watchdog)
    host_before = _reaped_cpu(listeners)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, total0 = _machine_busy()
    timer.start()
    try:
        if stdin_path is not None:
            with stdin_path.open("rb") as stdin:
                result = run_measured(
                    argv, stdin=stdin, consume=out.extend, env=fleet.environment()
                )
        else:
            result = run_measured(argv, consume=out.extend, env=fleet.environment())
    finally:
        timer.cancel()
    busy1, total1 = _machine_busy()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _wait_sessions_gone(set(listeners))
    host_cpu = _reaped_cpu(listeners) - host_before
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ncpu = os.cpu_count() or 1
    cores = ncpu * (busy1 - busy0) / max(1, total1 - total0)
    return Run(result, cpu, host_cpu, cores), bytes(out), hung.is_set()


def check_oneoff(stdout: bytes, expected: dict[str, str]) -> list[str]:
    """Problems with oneoff's ``[host] line`` output: every host exactly its one line."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    problems = []
    for line in stdout.decode(errors="replace").splitlines():
        match = LINE.fullmatch(line)
        if match is None:
            problems.append(f"unprefixed line: {line!r}")
            continue
        found[match["host"]].append(match["text"])
    for host, want in expected.items():
        got = found.get(host, [])
        if got != [want]:
            problems.append(f"{host}: expected [{want!r}], got {got!r}")
    for host in sorted(set(found) - set(expected)):
        problems.append(f"unknown host {host}: {found[host]!r}")
    return problems


def check_ssh(stdout: bytes, expected: dict[str, str]) -> list[str]:
    """Problems with the ssh output (lines unprefixed; each host's line is unique)."""
    got = collections.Counter(stdout.decode(errors="replace").splitlines())
    want = collections.Counter(expected.values())
    by_line = {line: host for host, line in expected.items()}
    problems = [f"{by_line[line]}: missing {line!r}" for line in want - got]
    problems += [f"unexpected or repeated line {line!r}" for line in got - want]
    return problems


@dataclass
class Pair:
    """Alternated rounds of oneoff and OpenSSH at one size and one parallelism."""

    hosts: int
    parallel: int
    oneoff: list[Run] = field(default_factory=list)
    ssh: list[Run] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    """What went wrong (the pair stops at the first run that is wrong)."""

    def runs(self, which: str) -> list[Run]:
        return self.oneoff if which == "oneoff" else self.ssh

    @property
    def complete(self) -> bool:
        return not self.wrong and bool(self.oneoff) and len(self.oneoff) == len(self.ssh)

    @property
    def ratios(self) -> list[float]:
        return [o.result.wall / s.result.wall for o, s in zip(self.oneoff, self.ssh, strict=False)]

    @property
    def ratio(self) -> float:
        return median(self.ratios)

    def wall(self, which: str) -> float:
        return median([r.result.wall for r in self.runs(which)])

    def rss_mb(self, which: str) -> float:
        return max(r.result.maxrss_kb for r in self.runs(which)) / 1024

    def cpu(self, which: str) -> float:
        return median([r.cpu for r in self.runs(which)])

    def cores(self, which: str) -> float:
        return median([r.machine_cores for r in self.runs(which)])

    def host_ms(self, which: str) -> float:
        """Host-side CPU per host (ms): sshd, login shell, probe, agent, command."""
        return median([r.host_cpu for r in self.runs(which)]) / self.hosts * 1000

    def client_ms(self, which: str) -> float:
        return self.cpu(which) / self.hosts * 1000


def _keep_failure(fleet: Fleet, label: str, run: Run, stdout: bytes) -> Path:
    """Save a wrong run's whole stdout and stderr where the clean-up does not reach."""
    fd, name = tempfile.mkstemp(prefix=f"oneoff-bench-fanout-failed-{label}-", suffix=".log")
    with os.fdopen(fd, "wb") as fh:
        fh.write(f"$ {shlex.join(run.result.argv)}\n".encode())
        fh.write(f"exit status {run.result.returncode}, {run.result.wall:.2f} s\n".encode())
        fh.write(b"--- stdout\n" + stdout + b"--- stderr\n" + run.result.stderr)
    return Path(name)


def run_pair(fleet: Fleet, hosts: int, parallel: int, rounds: int, timeout: float) -> Pair:
    """``rounds`` alternated runs of each; every run's output checked. A wrong run is
    recorded in ``Pair.wrong`` and the pair stops after that round (the bench goes on)."""
    pair = Pair(hosts, parallel)
    expected = fleet.expected(hosts)
    oneoff = fleet.oneoff(hosts, parallel)
    xargs, xargs_in = fleet.xargs(hosts, parallel)
    for i in range(rounds):
        order = [
            ("oneoff", oneoff, None, pair.oneoff, check_oneoff),
            ("OpenSSH", xargs, xargs_in, pair.ssh, check_ssh),
        ]
        if i % 2:
            order.reverse()
        for label, argv, stdin, runs, check in order:
            run, stdout, hung = measure(argv, fleet, stdin, timeout)
            problems = [f"HUNG: killed after {timeout:g} s"] if hung else []
            if run.result.returncode != 0:
                problems.append(f"exit status {run.result.returncode}")
            problems += check(stdout, expected)
            if problems:
                kept = _keep_failure(fleet, label, run, stdout)
                shown = "\n  ".join(problems[:8])
                more = f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else ""
                err = run.result.stderr.decode(errors="replace").strip().splitlines()
                head = "\n    ".join(err[:12]) or "(empty)"
                tail = "\n    ".join(err[-6:]) if len(err) > 12 else ""
                pair.wrong.append(
                    f"WRONG ({label}, {hosts} hosts, --parallel {parallel}, round {i + 1}, "
                    f"{run.result.wall:.2f} s, exit status {run.result.returncode}):\n"
                    f"  {shown}{more}\n  stderr ({len(err)} lines), first lines:\n    {head}"
                    + (f"\n  ... last lines:\n    {tail}" if tail else "")
                    + f"\n  whole stdout and stderr kept in {kept}"
                )
                print(pair.wrong[-1], file=sys.stderr, flush=True)
                continue
            runs.append(run)
        if pair.wrong:
            break
    return pair


# --------------------------------------------------------------------------- main


def _sizes(text: str) -> list[int]:
    if text.strip().lower() in ("", "none", "off", "no"):
        return []
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 10,100,200: {text!r}") from None
    if any(s < 2 for s in sizes):
        raise argparse.ArgumentTypeError("every size must be at least 2 hosts")
    return sizes


def _pair_lines(pair: Pair) -> list[str]:
    lines = []
    for label, which in (("oneoff", "oneoff"), ("OpenSSH", "ssh")):
        runs = pair.runs(which)
        if not runs:
            lines.append(f"  {label:<7} no complete run")
            continue
        walls = ", ".join(f"{r.result.wall:.2f}" for r in runs)
        lines.append(
            f"  {label:<7} median {pair.wall(which):6.2f} s (runs {walls}); CPU per host: "
            f"client {pair.client_ms(which):3.0f} ms + host side {pair.host_ms(which):3.0f} ms; "
            f"machine {pair.cores(which):.2f} cores busy"
        )
    if pair.ratios:
        lines.append(
            f"  per-round ratios oneoff/OpenSSH: {', '.join(f'{r:.2f}' for r in pair.ratios)}"
        )
    for wrong in pair.wrong:
        lines.append("  " + wrong.splitlines()[0].rstrip(":") + " (details above)")
    return lines


def _wall_cell(pair: Pair, label: str, width: int) -> str:
    """The median wall time of ``label``'s runs, or WRONG if one of them was."""
    if any(w.startswith(f"WRONG ({label},") for w in pair.wrong):
        return f"{'WRONG':>{width}}"
    runs = pair.runs("oneoff" if label == "oneoff" else "ssh")
    return f"{median([r.result.wall for r in runs]):>{width}.2f}" if runs else f"{'-':>{width}}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=100, help="hosts (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument(
        "--scaling",
        type=_sizes,
        default=_sizes("10,100,200"),
        help="host counts to compare at, or 'none' (default 10,100,200)",
    )
    parser.add_argument(
        "--other-rounds",
        type=int,
        default=1,
        help="runs of each at the other --scaling sizes and at --parallel 32 (default 1)",
    )
    parser.add_argument(
        "--no-login-rc",
        action="store_true",
        help="start the sshd servers with SetEnv SHLVL=1 so the hosts' bash skips ~/.bashrc "
        "(all hosts here share one home, and its rc may serialize them, e.g. pyenv rehash)",
    )
    parser.add_argument(
        "--run-timeout", type=float, default=180.0, help="kill a run after this long (s)"
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.other_rounds < 1 or args.hosts < 2:
        parser.error("--rounds and --other-rounds must be at least 1, --hosts at least 2")
    sizes = sorted({*args.scaling, args.hosts})

    started = time.perf_counter()
    pairs: dict[int, Pair] = {}
    default_pair: Pair | None = None
    wrong: list[str] = []
    with fleet_env(max(sizes), login_rc=not args.no_login_rc) as fleet:
        print(f"oneoff:  {shlex.join(fleet.oneoff(args.hosts, args.hosts))}")
        xargs, xargs_in = fleet.xargs(args.hosts, args.hosts)
        print(f"OpenSSH: {shlex.join(xargs)} < {xargs_in.name}, for each host its arguments of")
        print(f"         {shlex.join(fleet.ssh_words(0))}")
        env = fleet.environment()
        for k in sizes:  # validate and cache each inventory once (no connection)
            listing = run_measured(
                [*oneoff_command(), "-i", str(fleet.inventory(k)), "hosts", "-H", "all"], env=env
            )
            if listing.returncode != 0:
                print(f"FAILED:\n{listing.describe()}", file=sys.stderr)
                return 1
        # Warm-up, untimed but checked: page cache, pyc files, the first sessions.
        warm = run_pair(fleet, sizes[0], sizes[0], 1, args.run_timeout)
        wrong += warm.wrong
        print(
            f"warm-up at {sizes[0]} hosts: {'WRONG' if warm.wrong else 'both complete'}", flush=True
        )

        def progress(pair: Pair) -> None:
            walls = [
                f"{label} {_wall_cell(pair, label, 0).strip()}" for label in ("oneoff", "OpenSSH")
            ]
            state = ", ".join(w if w.endswith(("WRONG", "-")) else w + " s" for w in walls)
            print(f"  {pair.hosts} hosts, --parallel {pair.parallel}: {state}", flush=True)

        plan = [(args.hosts, args.hosts, args.rounds)]
        if args.hosts > ONEOFF_DEFAULT_PARALLEL:
            plan.append((args.hosts, ONEOFF_DEFAULT_PARALLEL, args.other_rounds))
        plan += [(k, k, args.other_rounds) for k in sizes if k != args.hosts]
        for hosts, parallel, rounds in plan:
            pair = run_pair(fleet, hosts, parallel, rounds, args.run_timeout)
            wrong += pair.wrong
            if parallel == hosts:
                pairs[hosts] = pair
            else:
                default_pair = pair
            progress(pair)
        shell = login_shell_ms()
    total = time.perf_counter() - started

    main_pair = pairs[args.hosts]
    print()
    print(
        "fan-out: `python -c` printing its cwd (the host's release) and $GREETING (its .env) "
        "on every host; own sshd per host on loopback; every host's line checked in every run"
    )
    print(
        f" {args.hosts} hosts, --parallel {args.hosts} (xargs -P {args.hosts}), "
        f"{args.rounds} alternated rounds:"
    )
    for line in _pair_lines(main_pair):
        print(line)
    if main_pair.ratios:
        print(
            "  median of per-round ratios oneoff/OpenSSH: "
            + fmt_ratio(main_pair.ratio, f"<= {RATIO_TARGET}", main_pair.ratio <= RATIO_TARGET)
        )
    if main_pair.complete:
        client = main_pair.client_ms("oneoff") / main_pair.client_ms("ssh")
        extra = main_pair.host_ms("oneoff") - main_pair.host_ms("ssh")
        print(
            f"  client CPU per host oneoff/OpenSSH: {client:.2f}; host-side CPU per host: "
            f"oneoff {extra:+.0f} ms vs OpenSSH (here the hosts share the client's CPUs)"
        )
    if main_pair.oneoff:
        rss = main_pair.rss_mb("oneoff")
        print(
            f"  oneoff client peak RSS (max of rounds, os.wait4): {rss:.1f} MB  "
            f"(target <= {RSS_TARGET_MB:g} MB: {'met' if rss <= RSS_TARGET_MB else 'NOT met'})"
        )
    if main_pair.ssh:
        print(
            f"  OpenSSH: {args.hosts} ssh processes; the largest peak RSS of one "
            f"{main_pair.rss_mb('ssh'):.1f} MB"
        )
    if default_pair is not None:
        print()
        print(
            f" {args.hosts} hosts, --parallel {ONEOFF_DEFAULT_PARALLEL} (oneoff's default; "
            f"xargs -P {ONEOFF_DEFAULT_PARALLEL}), {args.other_rounds} round(s):"
        )
        for line in _pair_lines(default_pair):
            print(line)
        if default_pair.ratios:
            print(
                f"  median ratio oneoff/OpenSSH: {default_pair.ratio:.2f}; oneoff peak RSS "
                f"{default_pair.rss_mb('oneoff'):.1f} MB"
            )
    if len(pairs) > 1:
        print()
        print(
            f" scaling, --parallel = hosts ({args.rounds} rounds at {args.hosts} hosts, "
            f"{args.other_rounds} elsewhere):"
        )
        print(
            f"  {'hosts':>5}  {'oneoff s':>8}  {'OpenSSH s':>9}  {'ratio':>5}  "
            f"{'oneoff s/100 hosts':>18}  {'CPU ms/host, client + host side':^31}  "
            f"{'oneoff RSS MB':>13}"
        )
        for k, pair in sorted(pairs.items()):
            cells = [f"{k:>5}"]
            cells.append(_wall_cell(pair, "oneoff", 8))
            cells.append(_wall_cell(pair, "OpenSSH", 9))
            if pair.complete:
                cells += [
                    f"{pair.ratio:>5.2f}",
                    f"{pair.wall('oneoff') / k * 100:>18.2f}",
                    f"oneoff {pair.client_ms('oneoff'):3.0f} + {pair.host_ms('oneoff'):3.0f}, "
                    f"OpenSSH {pair.client_ms('ssh'):3.0f} + {pair.host_ms('ssh'):3.0f}",
                    f"{pair.rss_mb('oneoff'):>13.1f}",
                ]
            else:
                cells += [f"{'-':>5}", f"{'-':>18}", f"{'-':^31}", f"{'-':>13}"]
            print("  " + "  ".join(cells))
        good = sorted(k for k, p in pairs.items() if p.complete)
        if len(good) > 1:
            lo, hi = good[0], good[-1]
            print(
                f"  {lo} -> {hi} hosts (x{hi / lo:g}): oneoff wall time "
                f"x{pairs[hi].wall('oneoff') / pairs[lo].wall('oneoff'):.1f}, OpenSSH "
                f"x{pairs[hi].wall('ssh') / pairs[lo].wall('ssh'):.1f}"
            )
    print()
    print("context:")
    print(
        f"  this machine ({os.cpu_count()} CPUs) is the client and every host: with the "
        "CPUs saturated, wall time follows CPU per host (client + host side) x hosts / CPUs"
    )
    print(
        "  client CPU: the client process and every process it reaped (OpenSSH: xargs and "
        "every ssh); host side: every sshd connection process and its children (shell, "
        "probe, agent, command), from the sshd listeners' cutime+cstime"
    )
    if args.no_login_rc:
        print("  --no-login-rc: the hosts' bash skipped ~/.bashrc (SetEnv SHLVL=1 in sshd_config)")
    else:
        print(
            f"  the hosts' login shell ({shell[0]} -c true as sshd starts it, reading its rc): "
            f"{shell[1]:.0f} ms alone; each tool pays it once per exec; all hosts share this "
            "account's rc (see --no-login-rc)"
        )
    print(f"  total bench time {total:.0f} s")
    if wrong:
        print()
        print(f"WRONG: {len(wrong)} run(s); first lines above, on stderr", file=sys.stderr)
    status = _report_leftovers()
    return 1 if wrong else status


def _report_leftovers() -> int:
    if LEFTOVERS:
        print("WRONG: processes left behind after every sshd was stopped:", file=sys.stderr)
        for line in LEFTOVERS:
            print(f"  {line}", file=sys.stderr)
        return 1
    print("leftover processes: none (every sshd and session stopped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
