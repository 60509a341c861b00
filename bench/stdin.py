"""Stdin throughput: a file on ``oneoff -T -H h -- sh -c 'cat > /dev/null'`` against
``ssh ... 'cat > /dev/null' < file``, alternated, on a real sshd on loopback; then one
integrity check, ``oneoff -H h -- sha256sum < file`` against hashlib here.

    python bench/stdin.py [--mb 50] [--rounds 3]

Reports the median MB/s of each (connection set-up included), the median of the
per-round ratios oneoff/ssh (target >= 0.7), and the clients' peak RSS. Exits 1 when a
run fails or the remote digest differs from the local one.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
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


def _make_file(path: Path, nbytes: int) -> str:
    """Random bytes (nothing compresses), written once; returns their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = nbytes
        while left:
            block = os.urandom(min(left, 1 << 20))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return digest.hexdigest()


def _timed(argv: list[str], data: Path, bench: Bench, label: str) -> Measured | None:
    with data.open("rb") as stdin:
        result = run_measured(argv, stdin=stdin, env=bench.environment())
    if result.returncode != 0:
        print(f"FAILED ({label}):\n{result.describe()}", file=sys.stderr)
        return None
    return result


def _remote_sha256(argv: list[str], data: Path, bench: Bench, label: str) -> str | None:
    out = bytearray()
    with data.open("rb") as stdin:
        result = run_measured(argv, stdin=stdin, consume=out.extend, env=bench.environment())
    if result.returncode != 0:
        print(f"FAILED ({label}):\n{result.describe()}", file=sys.stderr)
        return None
    words = out.decode(errors="replace").split()
    return words[0] if words else ""


def main() -> int:
    nbytes, n_rounds = size_and_rounds(__doc__.split("\n\n")[0], 50, "of stdin")

    with bench_env("stdin") as bench:
        data = bench.base / "stdin.bin"
        local_digest = _make_file(data, nbytes)
        oneoff = bench.oneoff("-T", "-H", bench.host, "--", "sh", "-c", "cat > /dev/null")
        ssh = bench.ssh("cat > /dev/null")
        print(f"oneoff: {shlex.join(oneoff)} < {data.name}")
        print(f"ssh:    {shlex.join(ssh)} < {data.name}")

        for argv, label in ((oneoff, "oneoff warm-up"), (ssh, "ssh warm-up")):
            if _timed(argv, data, bench, label) is None:
                return 1

        # Each round also runs both on an empty stdin: the fixed cost (connect, start,
        # exit) that the net rate leaves out.
        empty = bench.base / "empty.bin"
        empty.write_bytes(b"")
        one: list[Measured] = []
        plain: list[Measured] = []
        one_empty: list[Measured] = []
        plain_empty: list[Measured] = []
        for i in range(n_rounds):
            order = [(oneoff, one, one_empty, "oneoff"), (ssh, plain, plain_empty, "ssh")]
            if i % 2:
                order.reverse()
            for argv, results, fixed, label in order:
                measured = _timed(argv, data, bench, label)
                baseline = _timed(argv, empty, bench, f"{label}, empty stdin")
                if measured is None or baseline is None:
                    return 1
                results.append(measured)
                fixed.append(baseline)

        digests = {
            "oneoff": _remote_sha256(
                bench.oneoff("-H", bench.host, "--", "sha256sum"), data, bench, "oneoff sha256sum"
            ),
            "ssh": _remote_sha256(bench.ssh("sha256sum"), data, bench, "ssh sha256sum"),
        }

    ratios = [s.wall / o.wall for o, s in zip(one, plain, strict=True)]  # MB/s oneoff / ssh
    ratio = median(ratios)
    print()
    print(f"stdin: {nbytes / MB:g} MB of random bytes, {n_rounds} alternated rounds each")
    for label, results, fixed in (("oneoff", one, one_empty), ("ssh", plain, plain_empty)):
        rates = [nbytes / r.wall / MB for r in results]
        fixed_s = median([r.wall for r in fixed])
        net = nbytes / max(median([r.wall for r in results]) - fixed_s, 1e-9) / MB
        print(
            f"  {label:<6}  median {median(rates):7.1f} MB/s end to end "
            f"(rounds: {', '.join(f'{x:.1f}' for x in rates)})\n"
            f"          {net:7.1f} MB/s net of the {fixed_s * 1000:.0f} ms an empty stdin takes; "
            f"peak RSS {max(r.maxrss_kb for r in results) / 1024:.1f} MB"
        )
    print(
        "  median of per-round ratios oneoff/ssh: "
        + fmt_ratio(ratio, ">= 0.7", ratio >= RATIO_TARGET)
    )
    print()
    print(f"integrity: sha256 of the {nbytes / MB:g} MB file")
    print(f"  {'local (hashlib)':<17}  {local_digest}")
    wrong = False
    for label, digest in digests.items():
        if digest is None:
            wrong = True
            continue
        same = digest == local_digest
        wrong |= not same
        print(f"  {'remote via ' + label:<17}  {digest}  {'same' if same else 'DIFFERENT'}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
