"""The inventory as plain values: which hosts exist, how to reach them, named tasks.

::

    path = find_inventory(args.inventory, os.environ, Path.cwd(), Path.home())  # .find
    inventory = load_inventory(path)              # .load; InventoryError: file:line: key: ...
    hosts = inventory.select(["prod", "web*"])    # UsageError when a target matches nothing
    settings = inventory.settings("web1", Overrides(user="root"))   # frozen HostSettings

Records only, no pydantic: a run whose inventory is cached never imports the schema.
Settings cascade ``defaults`` < groups (in file order) < host < command-line
:class:`Overrides`; the file's part is merged once, when it is validated
(:mod:`oneoff.config.build`), and the rest here, per host, when asked.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oneoff.config.hints import listing, suggest
from oneoff.defaults import (
    DEFAULT_ALIVE_COUNT_MAX,
    DEFAULT_ALIVE_INTERVAL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_CURRENT,
    DEFAULT_ENV_FILES,
    DEFAULT_HOST_KEY_POLICY,
    DEFAULT_KILL_AFTER,
    DEFAULT_KNOWN_HOSTS,
    DEFAULT_RUNS_KEEP,
    DEFAULT_SSH_CONFIG,
    DEFAULT_STATE_DIR,
    DEFAULT_TRANSPORT,
    HOST_KEY_POLICIES,
)
from oneoff.errors import UsageError
from oneoff.values import Task

__all__ = ["HostSettings", "Inventory", "Overrides"]


@dataclass(frozen=True)
class Overrides:
    """Settings given on the command line; they win over everything in the file."""

    user: str | None = None
    port: int | None = None
    identity_file: Path | None = None
    host_key_policy: str | None = None
    connect_timeout: float | None = None
    kill_after: float | None = None


@dataclass(frozen=True)
class HostSettings:
    """One host's settings after the cascade; what the transport and the planner use.

    Remote paths are strings and, except ``state_dir``, kept as written: ``current`` is
    relative to ``app_root`` or absolute, ``venv`` and ``env_files`` are relative to the
    release or absolute (the release is only known after the probe). Local paths are
    :class:`Path` with ``~`` expanded. ``None`` means "not given": ``user``/``port`` then
    come from ssh_config or the SSH defaults, ``venv`` is auto-detected.
    """

    name: str
    transport: str
    hostname: str
    hostname_set: bool
    port: int | None
    user: str | None
    app_root: str
    current: str
    venv: str | None
    env_files: tuple[str, ...]
    identity_file: Path | None
    known_hosts: Path
    host_key_policy: str
    ssh_config: Path | None
    connect_timeout: float
    state_dir: str
    alive_interval: float
    alive_count_max: int
    kill_after: float
    runs_keep: float
    roles: tuple[str, ...]
    primary: bool


@dataclass(frozen=True, eq=False, repr=False)
class Inventory:
    """A validated inventory; made by :func:`oneoff.config.load.load_inventory`.

    ``hosts`` are in file order; ``groups`` maps each group to its hosts in the order the
    group lists them; ``tasks`` are the inventory's tasks (a release may add or override
    some later). ``layers`` holds, per host, the keys the file sets for it, already merged
    defaults < groups < host and validated; :meth:`settings` fills in the rest. Compared
    and hashed by identity: its mappings are not hashable.
    """

    path: Path
    hosts: tuple[str, ...]
    groups: Mapping[str, tuple[str, ...]]
    tasks: Mapping[str, Task]
    layers: Mapping[str, Mapping[str, Any]]
    roles: Mapping[str, tuple[str, ...]]
    primaries: frozenset[str]

    def __repr__(self) -> str:
        return f"<Inventory {self.path} hosts={len(self.hosts)} groups={len(self.groups)}>"

    def settings(self, host: str, overrides: Overrides = Overrides()) -> HostSettings:
        """Resolve *host*: defaults < its groups (file order) < the host < *overrides*."""
        given = self._given(host)
        base = self.path.absolute().parent
        app_root: str = given["app_root"]
        hostname = given.get("hostname")

        def pick(key: str, override: Any, default: Any) -> Any:
            return override if override is not None else given.get(key, default)

        return HostSettings(
            name=host,
            transport=given.get("transport", DEFAULT_TRANSPORT),
            hostname=hostname if hostname is not None else host,
            hostname_set=hostname is not None,
            port=pick("port", overrides.port, None),
            user=pick("user", overrides.user, None),
            app_root=app_root,
            current=given.get("current", DEFAULT_CURRENT),
            venv=given.get("venv"),
            env_files=tuple(given.get("env_file", DEFAULT_ENV_FILES)),
            identity_file=_identity_file(given, base, overrides),
            known_hosts=_local_path(given, "known_hosts", base)
            or Path(DEFAULT_KNOWN_HOSTS).expanduser(),
            host_key_policy=_host_key_policy(given, overrides),
            ssh_config=_ssh_config(given, base),
            connect_timeout=float(
                pick("connect_timeout", overrides.connect_timeout, DEFAULT_CONNECT_TIMEOUT)
            ),
            state_dir=posixpath.join(app_root, given.get("state_dir", DEFAULT_STATE_DIR)),
            alive_interval=float(given.get("alive_interval", DEFAULT_ALIVE_INTERVAL)),
            alive_count_max=int(given.get("alive_count_max", DEFAULT_ALIVE_COUNT_MAX)),
            kill_after=float(pick("kill_after", overrides.kill_after, DEFAULT_KILL_AFTER)),
            runs_keep=float(given.get("runs_keep", DEFAULT_RUNS_KEEP)),
            roles=self.roles[host],
            primary=host in self.primaries,
        )

    def select(self, targets: Sequence[str]) -> list[str]:
        """Host names for ``-H`` *targets*, in order of first appearance, without repeats.

        Each target may be a comma list of: a host, a group, ``all`` (every host, unless a
        host or group is named ``all``), ``role:NAME``, or a glob over host names (``web*``,
        case-sensitive). An item that matches nothing is an error, never skipped.
        """
        items = [item.strip() for target in targets for item in target.split(",")]
        items = [item for item in items if item]
        if not items:
            raise UsageError("no target: pass -H HOST|GROUP")
        chosen: dict[str, None] = {}
        for item in items:
            for host in self._expand(item):
                chosen.setdefault(host, None)
        return list(chosen)

    def primary(self, hosts: Sequence[str]) -> str:
        """The host a ``run: once`` task uses: the first marked ``primary``, else the first."""
        if not hosts:
            raise UsageError("no hosts to choose a primary from")
        return next((h for h in hosts if h in self.primaries), hosts[0])

    def groups_of(self, host: str) -> list[str]:
        """The groups *host* belongs to, in file order."""
        self._given(host)
        return [g for g, members in self.groups.items() if host in members]

    def _given(self, host: str) -> Mapping[str, Any]:
        if host not in self.layers:
            raise UsageError(f"unknown host {host!r}{suggest(host, self.hosts)}")
        return self.layers[host]

    def _expand(self, item: str) -> Sequence[str]:
        """One target item; a host or group name wins over ``all``, roles and globs."""
        if item in self.layers:
            return (item,)
        if item in self.groups:
            if not self.groups[item]:
                raise UsageError(f"group {item!r} has no hosts")
            return self.groups[item]
        if item == "all":
            return self.hosts
        if item.startswith("role:"):
            return self._with_role(item[len("role:") :])
        if any(c in item for c in "*?["):
            return self._matching(item)
        known = [*self.hosts, *self.groups]
        groups = f"; groups: {listing(self.groups)}" if self.groups else ""
        raise UsageError(
            f"no host or group named {item!r}{suggest(item, known)} "
            f"(hosts: {listing(self.hosts)}{groups})"
        )

    def _with_role(self, role: str) -> Sequence[str]:
        found = [h for h in self.hosts if role in self.roles[h]]
        if not found:
            roles = sorted({r for rs in self.roles.values() for r in rs})
            raise UsageError(
                f"no host has role {role!r}{suggest(role, roles)} "
                f"(roles: {listing(roles) or 'none defined'})"
            )
        return found

    def _matching(self, pattern: str) -> Sequence[str]:
        found = [h for h in self.hosts if fnmatch.fnmatchcase(h, pattern)]
        if not found:
            raise UsageError(f"no host matches {pattern!r} (hosts: {listing(self.hosts)})")
        return found


def _local_path(given: Mapping[str, Any], key: str, base: Path) -> Path | None:
    """A path on this machine: ``~`` expanded, relative ones against the inventory's folder."""
    value = given.get(key)
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _identity_file(given: Mapping[str, Any], base: Path, overrides: Overrides) -> Path | None:
    if overrides.identity_file is not None:
        return overrides.identity_file.expanduser()
    return _local_path(given, "identity_file", base)


def _ssh_config(given: Mapping[str, Any], base: Path) -> Path | None:
    """The file's ssh_config, else ~/.ssh/config if it exists (not having one is normal)."""
    chosen = _local_path(given, "ssh_config", base)
    if chosen is not None:
        return chosen
    default = Path(DEFAULT_SSH_CONFIG).expanduser()
    return default if default.exists() else None


def _host_key_policy(given: Mapping[str, Any], overrides: Overrides) -> str:
    """The file's policy was validated by the schema; an override is checked here."""
    policy: str = overrides.host_key_policy or given.get("host_key_policy", DEFAULT_HOST_KEY_POLICY)
    if policy not in HOST_KEY_POLICIES:
        raise UsageError(
            f"host key policy {policy!r}: expected one of: {', '.join(HOST_KEY_POLICIES)} "
            "(accepting any host key is not offered)"
        )
    return policy
