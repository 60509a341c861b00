"""Remote stdout throughput: ``oneoff -H h -- head -c BYTES /dev/zero`` against
``ssh ... 'head -c BYTES /dev/zero'``, both piped into a byte counter here, alternated,
on a real sshd on loopback.

    python bench/throughput.py [--mb 200] [--rounds 3]

Every byte is counted (stdout read in 1 MiB chunks) and checked to be a zero byte; a
short or corrupt stream exits 1. Reports the median MB/s of each end to end (connection
set-up included, as a user sees it) and after the first byte, the median of the per-round
ratios oneoff/ssh (target >= 0.7), and the oneoff client's peak RSS from ``os.wait4``
(target <= 120 MB).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    MB,
    Bench,
    Measured,
    bench_env,
    fmt_ratio,
    median,
    run_measured,
    size_and_rounds,
)

RATIO_TARGET = 0.7
RSS_TARGET_MB = 120.0


@dataclass
class _Counter:
    """The consumer: counts bytes and the ones that are not zero."""

    nonzero: int = 0

    def __call__(self, chunk: bytes) -> None:
        self.nonzero += len(chunk) - chunk.count(0)


@dataclass(frozen=True)
class Round:
    result: Measured
    nbytes: int

    @property
    def mb_s(self) -> float:
        return self.nbytes / self.result.wall / MB

    @property
    def streaming_mb_s(self) -> float:
        first = self.result.first_byte or 0.0
        return self.nbytes / max(self.result.wall - first, 1e-9) / MB


def _run(argv: list[str], bench: Bench, nbytes: int, label: str) -> Round | None:
    counter = _Counter()
    result = run_measured(argv, consume=counter, env=bench.environment())
    problems = []
    if result.returncode != 0:
        problems.append(f"exit status {result.returncode}")
    if result.stdout_bytes != nbytes:
        problems.append(f"{result.stdout_bytes} bytes arrived of {nbytes}")
    if counter.nonzero:
        problems.append(f"{counter.nonzero} bytes were not zero")
    if problems:
        print(f"WRONG ({label}): {'; '.join(problems)}\n{result.describe()}", file=sys.stderr)
        return None
    return Round(result, nbytes)


def main() -> int:
    nbytes, n_rounds = size_and_rounds(__doc__.split("\n\n")[0], 200, "per run")

    with bench_env("throughput") as bench:
        command = ["head", "-c", str(nbytes), "/dev/zero"]
        oneoff = bench.oneoff("-H", bench.host, "--", *command)
        ssh = bench.ssh(shlex.join(command))
        print(f"oneoff: {shlex.join(oneoff)} | count")
        print(f"ssh:    {shlex.join(ssh)} | count")

        # Warm-up (page cache, pyc files), one small untimed run each.
        warm = ["head", "-c", str(MB), "/dev/zero"]
        for argv, label in (
            (bench.oneoff("-H", bench.host, "--", *warm), "oneoff warm-up"),
            (bench.ssh(shlex.join(warm)), "ssh warm-up"),
        ):
            if _run(argv, bench, MB, label) is None:
                return 1

        one: list[Round] = []
        plain: list[Round] = []
        for i in range(n_rounds):
            order = [(oneoff, one, "oneoff"), (ssh, plain, "ssh")]
            if i % 2:
                order.reverse()
            for argv, rounds, label in order:
                measured = _run(argv, bench, nbytes, label)
                if measured is None:
                    return 1
                rounds.append(measured)

    ratios = [o.mb_s / s.mb_s for o, s in zip(one, plain, strict=True)]
    ratio = median(ratios)
    rss_mb = max(r.result.maxrss_kb for r in one) / 1024
    print()
    print(
        f"throughput: {nbytes / MB:g} MB of remote stdout, {n_rounds} alternated rounds each, "
        "every byte counted and checked"
    )
    for label, rounds in (("oneoff", one), ("ssh", plain)):
        print(
            f"  {label:<6}  median {median([r.mb_s for r in rounds]):7.1f} MB/s end to end, "
            f"{median([r.streaming_mb_s for r in rounds]):7.1f} MB/s after the first byte "
            f"(first byte at {median([r.result.first_byte or 0.0 for r in rounds]) * 1000:.0f} ms)"
            f"; peak RSS {max(r.result.maxrss_kb for r in rounds) / 1024:.1f} MB"
        )
    print(f"  per-round MB/s oneoff: {', '.join(f'{r.mb_s:.1f}' for r in one)}")
    print(f"  per-round MB/s ssh:    {', '.join(f'{r.mb_s:.1f}' for r in plain)}")
    print(
        "  median of per-round ratios oneoff/ssh: "
        + fmt_ratio(ratio, ">= 0.7", ratio >= RATIO_TARGET)
    )
    print(
        f"  oneoff client peak RSS (max of rounds, os.wait4): {rss_mb:.1f} MB  "
        f"(target <= {RSS_TARGET_MB:g} MB: {'met' if rss_mb <= RSS_TARGET_MB else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
