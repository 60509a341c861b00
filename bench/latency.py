"""Latency of one admin command: the whole ``oneoff -H h -- python -c pass`` process
against the OpenSSH one-liner doing the same work (cd into the release, load its .env,
exec the venv's python), alternated, on a real sshd on loopback.

    python bench/latency.py [--runs 15]

Prints the median wall time of each, the median of the per-pair ratios oneoff/ssh
(target <= 1.0), and the ten slowest imports of one oneoff start-up
(``PYTHONPROFILEIMPORTTIME``). Exits 1 only when a run fails or the two disagree.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Bench,
    Measured,
    bench_env,
    fmt_ratio,
    login_shell_ms,
    median,
    run_measured,
)

TARGET = 1.0
CHECK_CODE = (
    "import os, sys; print(os.getcwd()); print(sys.prefix); "
    "print(os.environ.get('GREETING')); print(os.environ.get('DATABASE_URL'))"
)


def _oneoff_argv(bench: Bench, *words: str) -> list[str]:
    return bench.oneoff("-H", bench.host, "--", *words)


def _ssh_argv(bench: Bench, *words: str) -> list[str]:
    command = shlex.join([".venv/bin/" + words[0], *words[1:]])
    return bench.ssh(bench.in_release(command))


def _check_same_work(bench: Bench) -> bool:
    """Both ways run the venv's python in the release with the .env loaded."""
    outputs: list[str] = []
    for argv in (
        _oneoff_argv(bench, "python", "-c", CHECK_CODE),
        _ssh_argv(bench, "python", "-c", CHECK_CODE),
    ):
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, env=bench.environment()
        )
        if result.returncode != 0:
            print(
                f"FAILED: {shlex.join(argv)}\n  exit status {result.returncode}\n"
                f"  stderr: {result.stderr.decode(errors='replace').strip()}",
                file=sys.stderr,
            )
            return False
        outputs.append(result.stdout.decode(errors="replace"))
    if outputs[0] != outputs[1]:
        print(
            f"WRONG: oneoff and ssh disagree:\n--- oneoff\n{outputs[0]}--- ssh\n{outputs[1]}",
            file=sys.stderr,
        )
        return False
    cwd, prefix, greeting, _url = outputs[0].splitlines()
    print(f"same work checked: cwd={cwd} sys.prefix={prefix} GREETING={greeting}")
    return True


def _failed(result: Measured) -> bool:
    if result.returncode != 0:
        print(f"FAILED:\n{result.describe()}", file=sys.stderr)
        return True
    return False


def _login_shell_ms(runs: int = 5) -> tuple[str, float, float] | None:
    """The host's login shell running ``true`` with and without its rc files (bash only)."""
    shell, with_rc = login_shell_ms(runs=runs)
    if Path(shell).name != "bash":
        return None
    return shell, with_rc, login_shell_ms("--norc", runs=runs)[1]


def _importtime(bench: Bench, top: int = 10) -> list[str]:
    """The ``top`` imports by cumulative time in one oneoff run (as users start it)."""
    env = {**bench.environment(), "PYTHONPROFILEIMPORTTIME": "1"}
    result = run_measured(_oneoff_argv(bench, "python", "-c", "pass"), env=env)
    rows: list[tuple[int, int, str]] = []
    for line in result.stderr.decode(errors="replace").splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line[len("import time:") :].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        rows.append((int(fields[1]), int(fields[0]), fields[2].rstrip()))
    if result.returncode != 0 or not rows:
        return [f"(no import profile: exit status {result.returncode})"]
    # Top-level entries (no indentation) add up to the whole import cost.
    total = sum(cum for cum, _self, name in rows if not name.startswith("  "))
    lines = [f"  {'cumulative':>10}  {'self':>8}  module   (us)"]
    for cumulative, own, name in sorted(rows, reverse=True)[:top]:
        lines.append(f"  {cumulative:>10}  {own:>8}  {name}")
    lines.append(
        f"  total import time {total / 1000:.0f} ms of a {result.wall * 1000:.0f} ms run "
        f"(importtime itself adds some)"
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="pairs to time (default 15)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    with bench_env("latency") as bench:
        env = bench.environment()
        oneoff = _oneoff_argv(bench, "python", "-c", "pass")
        ssh = _ssh_argv(bench, "python", "-c", "pass")
        print(f"oneoff: {shlex.join(oneoff)}")
        print(f"ssh:    {shlex.join(ssh)}")
        if not _check_same_work(bench):
            return 1

        # One untimed run each: page cache, pyc files, sshd's first fork.
        for argv in (oneoff, ssh):
            if _failed(run_measured(argv, env=env)):
                return 1

        one: list[Measured] = []
        plain: list[Measured] = []
        for i in range(args.runs):
            # Alternate which goes first, so neither always follows the other.
            order = ((oneoff, one), (ssh, plain)) if i % 2 == 0 else ((ssh, plain), (oneoff, one))
            for argv, results in order:
                result = run_measured(argv, env=env)
                if _failed(result):
                    return 1
                results.append(result)

        floor = [run_measured(bench.ssh("true"), env=env) for _ in range(5)]
        if any(_failed(r) for r in floor):
            return 1
        shell = _login_shell_ms()
        imports = _importtime(bench)

    ratios = [o.wall / s.wall for o, s in zip(one, plain, strict=True)]
    med_one = median([r.wall for r in one])
    med_ssh = median([r.wall for r in plain])
    med_ratio = median(ratios)
    print()
    print(f"latency: {args.runs} alternated pairs, `-- python -c pass` on host h (loopback)")
    print(
        f"  oneoff  median {med_one * 1000:7.1f} ms   (min {min(r.wall for r in one) * 1000:.1f},"
        f" max {max(r.wall for r in one) * 1000:.1f})   peak RSS "
        f"{median([r.maxrss_kb for r in one]) / 1024:.1f} MB"
    )
    print(
        f"  ssh     median {med_ssh * 1000:7.1f} ms   (min {min(r.wall for r in plain) * 1000:.1f},"
        f" max {max(r.wall for r in plain) * 1000:.1f})   peak RSS "
        f"{median([r.maxrss_kb for r in plain]) / 1024:.1f} MB"
    )
    print(f"  oneoff - ssh (medians): {(med_one - med_ssh) * 1000:+.1f} ms")
    verdict = fmt_ratio(med_ratio, "<= 1.0", med_ratio <= TARGET)
    print(f"  median of per-pair ratios oneoff/ssh: {verdict}")
    print(f"  per-pair ratios: min {min(ratios):.2f}, max {max(ratios):.2f}")
    print()
    print("context:")
    bare = median([r.wall for r in floor]) * 1000
    print(f"  `ssh ... true` (one bare SSH exec), median of {len(floor)}: {bare:.1f} ms")
    if shell is not None:
        name, with_rc, without = shell
        print(
            f"  login shell on the host ({name} -c true): {with_rc:.1f} ms as sshd starts it "
            f"(reads ~/.bashrc), {without:.1f} ms with --norc; both tools pay it once per run"
        )
    print()
    print("oneoff start-up: top imports by cumulative time (PYTHONPROFILEIMPORTTIME=1, one run)")
    for line in imports:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
