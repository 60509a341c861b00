"""Network namespaces joined to ours by a veth pair, for network-fault tests (root only).

One ``VethLink`` is a fresh namespace ``oneoff-test-<pid>-<n>`` and a veth pair
``oo<pid>h<n>`` (ours) / ``oo<pid>n<n>`` (in the namespace), numbered on a /30 of
10.231.0.0/16 that no interface here uses yet (allocated under a lock file, so
concurrent test sessions on one machine never share a subnet). Our end is ``.1``, the
namespace's ``.2``; the namespace has a route to our end's /30 only, so nothing it runs
can reach anything but us. Both ends get permanent neighbour entries, so no ARP runs:
with packets dropped, a connection attempt *times out* (as to a host that is down behind
a router) instead of failing with "no route to host" when ARP gives up.

Faults, applied to both directions (each end's egress):

``cut()``      every packet is dropped (``pfifo limit 0``: a queue that holds nothing —
               like netem's ``loss 100%``, and available on every kernel);
``shape()``    a slow link: netem delay and rate when the kernel has netem, else a token
               bucket (``tbf``) rate limit only — the description it returns says which;
``restore()``  a clean link again (queued packets are not replayed: TCP retransmits).

``close()`` (always call it; ``link()`` does) kills whatever still runs in the namespace
— only processes there, which the test started — deletes the veth pair and the namespace,
and is idempotent. Links still open at interpreter exit are closed by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NetnsError", "VethLink", "create_link", "link", "netns_unavailable_reason"]

SUPERNET = ipaddress.IPv4Network("10.231.0.0/16")
PREFIX = "oneoff-test-"
_LOCK_FILE = Path(tempfile.gettempdir()) / "oneoff-tests-netns.lock"
_SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
_counter = itertools.count(1)
_live: set[VethLink] = set()
_reason: list[str | None] = []  # cached netns_unavailable_reason()
_netem: list[bool] = []  # cached: does this kernel have sch_netem?


class NetnsError(RuntimeError):
    """An ``ip``/``tc`` command failed (the message has the command and its stderr)."""


def _ip_program(name: str) -> str | None:
    path = os.environ.get("PATH", "")
    return shutil.which(name, path=os.pathsep.join([path, *_SBIN]))


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=30
    )
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def netns_unavailable_reason() -> str | None:
    """None when this process can make namespaces and veth pairs, else why not (a skip
    reason). Tried once per process by making and deleting a namespace and a veth pair."""
    if not _reason:
        _reason.append(_probe())
    return _reason[0]


def _probe() -> str | None:
    if os.geteuid() != 0:
        return "network-fault tests need root (to create network namespaces)"
    ip, tc = _ip_program("ip"), _ip_program("tc")
    if ip is None or tc is None:
        return "network-fault tests need iproute2's ip and tc (apt-get install iproute2)"
    name = f"{PREFIX}{os.getpid()}-probe"
    added = _run(ip, "netns", "add", name, check=False)
    if added.returncode != 0:
        return f"`ip netns add` failed here: {added.stderr.strip() or added.returncode}"
    try:
        dev = f"oo{os.getpid()}p"
        veth = _run(
            ip, "link", "add", dev, "type", "veth", "peer", "name", dev + "x", "netns", name,
            check=False,
        )  # fmt: skip
        if veth.returncode != 0:
            return f"cannot create a veth pair here: {veth.stderr.strip() or veth.returncode}"
        _run(ip, "link", "del", dev, check=False)
    finally:
        _run(ip, "netns", "del", name, check=False)
    return None


@dataclass(eq=False)
class VethLink:
    """A namespace and the veth pair to it; see the module's docstring."""

    namespace: str
    host_dev: str
    ns_dev: str
    host_addr: str
    ns_addr: str
    prefixlen: int = 30
    shaped: str = ""
    _closed: bool = field(default=False, repr=False)

    @property
    def ip(self) -> str:
        program = _ip_program("ip")
        assert program is not None
        return program

    @property
    def tc(self) -> str:
        program = _ip_program("tc")
        assert program is not None
        return program

    def exec_prefix(self) -> list[str]:
        """``ip netns exec NS``: put it before a command line to run it in the namespace."""
        return [self.ip, "netns", "exec", self.namespace]

    def pids(self) -> list[int]:
        """Processes in the namespace, from ``ip netns pids``."""
        result = _run(self.ip, "netns", "pids", self.namespace, check=False)
        return [int(word) for word in result.stdout.split() if word.isdigit()]

    # -- faults ---------------------------------------------------------------------
    def _qdisc(self, *spec: str) -> None:
        """``tc qdisc replace ... root SPEC`` on both ends (each end's egress)."""
        _run(self.tc, "qdisc", "replace", "dev", self.host_dev, "root", *spec)
        _run(self.tc, "-n", self.namespace, "qdisc", "replace", "dev", self.ns_dev, "root", *spec)

    def cut(self) -> None:
        """Drop every packet both ways, from now until ``restore()``."""
        self._qdisc("pfifo", "limit", "0")

    def restore(self) -> None:
        """Back to a clean link (the veth's default: no queue, no loss, no delay)."""
        for argv in (
            (self.tc, "qdisc", "del", "dev", self.host_dev, "root"),
            (self.tc, "-n", self.namespace, "qdisc", "del", "dev", self.ns_dev, "root"),
        ):
            result = _run(*argv, check=False)
            # Deleting the default (no qdisc set) fails harmlessly; anything else is real.
            if result.returncode != 0 and "handle of zero" not in result.stderr:
                raise NetnsError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
        self.shaped = ""

    def shape(self, *, delay_ms: int, rate: str) -> str:
        """Make the link slow both ways; returns what was applied (netem may be missing)."""
        if self.has_netem():
            self._qdisc("netem", "delay", f"{delay_ms}ms", "rate", rate, "limit", "10000")
            self.shaped = f"netem delay {delay_ms}ms rate {rate} each way"
        else:
            self._qdisc("tbf", "rate", rate, "burst", "32kbit", "latency", "400ms")
            self.shaped = (
                f"tbf rate {rate} each way (no added delay: this kernel has no netem qdisc)"
            )
        return self.shaped

    def has_netem(self) -> bool:
        """Whether ``tc qdisc ... netem`` works on this kernel (sch_netem is a module)."""
        if not _netem:
            probe = _run(
                self.tc, "qdisc", "add", "dev", self.host_dev, "root", "netem", "delay", "0ms",
                check=False,
            )  # fmt: skip
            _netem.append(probe.returncode == 0)
            if probe.returncode == 0:
                _run(self.tc, "qdisc", "del", "dev", self.host_dev, "root", check=False)
        return _netem[0]

    # -- teardown -------------------------------------------------------------------
    def close(self) -> None:
        """Kill what runs in the namespace, delete the veth pair and the namespace."""
        if self._closed:
            return
        self._closed = True
        _live.discard(self)
        problems = []
        for attempt in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:  # started in this fresh namespace: by this test, so ours
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if attempt else signal.SIGTERM)
            time.sleep(0.1)
        else:
            problems.append(f"processes left in {self.namespace}: {self.pids()}")
        if _exists(self.ip, self.host_dev):
            deleted = _run(self.ip, "link", "del", self.host_dev, check=False)
            if deleted.returncode != 0:
                problems.append(f"ip link del {self.host_dev}: {deleted.stderr.strip()}")
        deleted = _run(self.ip, "netns", "del", self.namespace, check=False)
        if deleted.returncode != 0:
            problems.append(f"ip netns del {self.namespace}: {deleted.stderr.strip()}")
        if problems:
            raise NetnsError("; ".join(problems))


def _exists(ip: str, dev: str) -> bool:
    return _run(ip, "link", "show", "dev", dev, check=False).returncode == 0


def _mac(argv: Sequence[str]) -> str:
    words = _run(*argv).stdout.split()
    return words[words.index("link/ether") + 1]


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    with _LOCK_FILE.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_subnet(ip: str) -> ipaddress.IPv4Network:
    """A /30 of SUPERNET that overlaps no IPv4 address or route here (call under the lock)."""
    used = []
    for line in _run(ip, "-4", "-o", "addr", "show").stdout.splitlines():
        words = line.split()
        if "inet" in words:
            used.append(ipaddress.IPv4Interface(words[words.index("inet") + 1]).network)
    for line in _run(ip, "-4", "route", "show").stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            if word != "default":
                used.append(ipaddress.IPv4Network(word, strict=False))
    subnets = list(SUPERNET.subnets(new_prefix=30))
    start = (os.getpid() * 7919) % len(subnets)  # spread concurrent sessions apart
    for subnet in subnets[start:] + subnets[:start]:
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise NetnsError(f"no free /30 left in {SUPERNET}")


def create_link() -> VethLink:
    """Make a namespace and a veth pair to it, up and addressed (see the module docstring).

    Raises NetnsError when a step fails, having undone what was made.
    """
    ip = _ip_program("ip")
    if ip is None:
        raise NetnsError("iproute2's ip is not installed")
    n = next(_counter)
    pid = os.getpid()
    namespace = f"{PREFIX}{pid}-{n}"
    host_dev, ns_dev = f"oo{pid}h{n}", f"oo{pid}n{n}"
    with _allocation_lock():
        subnet = _free_subnet(ip)
        host_addr, ns_addr = (str(a) for a in subnet.hosts())
        made = VethLink(namespace, host_dev, ns_dev, host_addr, ns_addr, subnet.prefixlen)
        _run(ip, "netns", "add", namespace)
        _live.add(made)
        try:
            _run(ip, "link", "add", host_dev, "type", "veth", "peer", "name", ns_dev,
                 "netns", namespace)  # fmt: skip
            _run(ip, "addr", "add", f"{host_addr}/{subnet.prefixlen}", "dev", host_dev)
        except BaseException:
            made.close()
            raise
    try:
        inside = [ip, "-n", namespace]
        _run(*inside, "addr", "add", f"{ns_addr}/{subnet.prefixlen}", "dev", ns_dev)
        _run(*inside, "link", "set", "lo", "up")
        _run(ip, "link", "set", host_dev, "up")
        _run(*inside, "link", "set", ns_dev, "up")
        host_mac = _mac([ip, "-o", "link", "show", "dev", host_dev])
        ns_mac = _mac([*inside, "-o", "link", "show", "dev", ns_dev])
        _run(ip, "neigh", "replace", ns_addr, "lladdr", ns_mac, "nud", "permanent",
             "dev", host_dev)  # fmt: skip
        _run(*inside, "neigh", "replace", host_addr, "lladdr", host_mac, "nud", "permanent",
             "dev", ns_dev)  # fmt: skip
    except BaseException:
        made.close()
        raise
    return made


@contextlib.contextmanager
def link() -> Iterator[VethLink]:
    """``create_link()``, closed on leaving the block however it is left."""
    made = create_link()
    try:
        yield made
    finally:
        made.close()


@atexit.register
def _close_leftovers() -> None:
    for leftover in list(_live):
        with contextlib.suppress(Exception):
            leftover.close()
