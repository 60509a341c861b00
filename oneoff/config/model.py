"""The inventory: which hosts exist, how to reach them, where the app lives, named tasks.

Loading is strict and happens once, before anything connects::

    path = find_inventory(args.inventory, os.environ, Path.cwd(), Path.home())
    inventory = load_inventory(path)              # InventoryError: file:line: key: expected ...
    hosts = inventory.select(["prod", "web*"])    # UsageError when a target matches nothing
    settings = inventory.settings("web1", Overrides(user="root"))   # frozen HostSettings

This module holds the resolved, plain values. Validation (pydantic models, YAML line
numbers) lives in :mod:`oneoff.config.schema` and only runs when the file changed:
the validated result is cached as JSON keyed by the file's content, so a run whose
inventory is unchanged imports neither pydantic nor ruamel.yaml (measured: ~90 ms of
start-up). Settings cascade ``defaults`` < groups (in file order) < host < command-line
:class:`Overrides`.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from oneoff import __version__
from oneoff.errors import InventoryError, UsageError
from oneoff.plan.tasks import Task

__all__ = [
    "INVENTORY_ENV",
    "HostSettings",
    "Inventory",
    "Overrides",
    "find_inventory",
    "load_inventory",
]

INVENTORY_ENV = "ONEOFF_INVENTORY"
HOST_KEY_POLICIES: tuple[str, ...] = ("strict", "accept-new")

DEFAULT_CURRENT = "current"
DEFAULT_ENV_FILES = (".env",)
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_ALIVE_INTERVAL = 10.0
DEFAULT_ALIVE_COUNT_MAX = 3
DEFAULT_KILL_AFTER = 10.0
DEFAULT_RUNS_KEEP = 30 * 86400.0
STATE_DIR_UNDER_APP_ROOT = "shared/oneoff"

# --------------------------------------------------------------------------- resolved values


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


# --------------------------------------------------------------------------- the inventory


class Inventory:
    """A loaded, validated inventory. Build it with :func:`load_inventory`.

    ``hosts`` are in file order; ``groups`` maps each group to its hosts in the order the
    group lists them; ``tasks`` are the inventory's tasks (a release may add or override
    some later).
    """

    __slots__ = ("_layers", "_primary", "_roles", "groups", "hosts", "path", "tasks")

    def __init__(
        self,
        path: Path,
        hosts: Sequence[str],
        groups: Mapping[str, Sequence[str]],
        tasks: Mapping[str, Task],
        layers: Mapping[str, Mapping[str, Any]],
        roles: Mapping[str, Sequence[str]],
        primary: Iterable[str],
    ) -> None:
        self.path = path
        self.hosts: tuple[str, ...] = tuple(hosts)
        self.groups: dict[str, tuple[str, ...]] = {g: tuple(h) for g, h in groups.items()}
        self.tasks: dict[str, Task] = dict(tasks)
        self._layers = {h: dict(v) for h, v in layers.items()}
        self._roles = {h: tuple(r) for h, r in roles.items()}
        self._primary = frozenset(primary)

    def __repr__(self) -> str:
        return f"<Inventory {self.path} hosts={len(self.hosts)} groups={len(self.groups)}>"

    def to_json(self) -> dict[str, Any]:
        """Plain data for the validation cache (see :func:`load_inventory`)."""
        return {
            "path": str(self.path),
            "hosts": list(self.hosts),
            "groups": {g: list(h) for g, h in self.groups.items()},
            "tasks": {name: asdict(task) for name, task in self.tasks.items()},
            "layers": self._layers,
            "roles": {h: list(r) for h, r in self._roles.items()},
            "primary": sorted(self._primary),
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Inventory:
        tasks = {
            name: Task(**{**fields, "command": tuple(fields["command"])})
            for name, fields in record["tasks"].items()
        }
        return cls(
            path=Path(record["path"]),
            hosts=record["hosts"],
            groups=record["groups"],
            tasks=tasks,
            layers=record["layers"],
            roles=record["roles"],
            primary=record["primary"],
        )

    def settings(self, host: str, overrides: Overrides = Overrides()) -> HostSettings:
        """Resolve *host*: defaults < its groups (file order) < the host < *overrides*."""
        if host not in self._layers:
            raise UsageError(f"unknown host {host!r}{_suggest(host, self.hosts)}")
        given = self._layers[host]
        base = self.path.absolute().parent

        def local(key: str) -> Path | None:
            value = given.get(key)
            if value is None:
                return None
            path = Path(value).expanduser()
            return path if path.is_absolute() else base / path

        policy = overrides.host_key_policy or given.get("host_key_policy", "strict")
        if policy not in HOST_KEY_POLICIES:
            raise UsageError(
                f"host key policy {policy!r}: expected one of: {', '.join(HOST_KEY_POLICIES)} "
                "(accepting any host key is not offered)"
            )
        identity = local("identity_file")
        if overrides.identity_file is not None:
            identity = overrides.identity_file.expanduser()
        ssh_config = local("ssh_config")
        if ssh_config is None:
            default = Path("~/.ssh/config").expanduser()
            ssh_config = default if default.exists() else None
        app_root: str = given["app_root"]
        state_dir = posixpath.join(app_root, given.get("state_dir", STATE_DIR_UNDER_APP_ROOT))
        hostname = given.get("hostname")

        def pick(key: str, override: Any, default: Any) -> Any:
            return override if override is not None else given.get(key, default)

        return HostSettings(
            name=host,
            transport=given.get("transport", "ssh"),
            hostname=hostname if hostname is not None else host,
            hostname_set=hostname is not None,
            port=pick("port", overrides.port, None),
            user=pick("user", overrides.user, None),
            app_root=app_root,
            current=given.get("current", DEFAULT_CURRENT),
            venv=given.get("venv"),
            env_files=tuple(given.get("env_file", DEFAULT_ENV_FILES)),
            identity_file=identity,
            known_hosts=local("known_hosts") or Path("~/.ssh/known_hosts").expanduser(),
            host_key_policy=policy,
            ssh_config=ssh_config,
            connect_timeout=float(
                pick("connect_timeout", overrides.connect_timeout, DEFAULT_CONNECT_TIMEOUT)
            ),
            state_dir=state_dir,
            alive_interval=float(given.get("alive_interval", DEFAULT_ALIVE_INTERVAL)),
            alive_count_max=int(given.get("alive_count_max", DEFAULT_ALIVE_COUNT_MAX)),
            kill_after=float(pick("kill_after", overrides.kill_after, DEFAULT_KILL_AFTER)),
            runs_keep=float(given.get("runs_keep", DEFAULT_RUNS_KEEP)),
            roles=self._roles[host],
            primary=host in self._primary,
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

    def _expand(self, item: str) -> Sequence[str]:
        if item in self._layers:
            return (item,)
        if item in self.groups:
            if not self.groups[item]:
                raise UsageError(f"group {item!r} has no hosts")
            return self.groups[item]
        if item == "all":
            return self.hosts
        if item.startswith("role:"):
            role = item[len("role:") :]
            found = [h for h in self.hosts if role in self._roles[h]]
            if not found:
                roles = sorted({r for rs in self._roles.values() for r in rs})
                raise UsageError(
                    f"no host has role {role!r}{_suggest(role, roles)} "
                    f"(roles: {_listing(roles) or 'none defined'})"
                )
            return found
        if any(c in item for c in "*?["):
            found = [h for h in self.hosts if fnmatch.fnmatchcase(h, item)]
            if not found:
                raise UsageError(f"no host matches {item!r} (hosts: {_listing(self.hosts)})")
            return found
        known = [*self.hosts, *self.groups]
        groups = f"; groups: {_listing(self.groups)}" if self.groups else ""
        raise UsageError(
            f"no host or group named {item!r}{_suggest(item, known)} "
            f"(hosts: {_listing(self.hosts)}{groups})"
        )

    def primary(self, hosts: Sequence[str]) -> str:
        """The host a ``run: once`` task uses: the first marked ``primary``, else the first."""
        if not hosts:
            raise UsageError("no hosts to choose a primary from")
        return next((h for h in hosts if h in self._primary), hosts[0])

    def groups_of(self, host: str) -> list[str]:
        """The groups *host* belongs to, in file order."""
        if host not in self._layers:
            raise UsageError(f"unknown host {host!r}{_suggest(host, self.hosts)}")
        return [g for g, members in self.groups.items() if host in members]


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _listing(names: Iterable[str], limit: int = 20) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


# --------------------------------------------------------------------------- discovery


def find_inventory(explicit: str | None, environ: Mapping[str, str], cwd: Path, home: Path) -> Path:
    """Where the inventory is: ``-i PATH``, ``$ONEOFF_INVENTORY``, ``./oneoff.yaml``,
    ``./inventory.yaml``, ``~/.config/oneoff/inventory.yaml``, first found.

    A path the user named (``-i`` or the variable) must exist: falling through to another
    file would run against hosts they did not mean.
    """

    def resolve(text: str) -> Path:
        path = home / text[2:] if text == "~" or text.startswith("~/") else Path(text)
        return path if path.is_absolute() else cwd / path

    for text, what in ((explicit, "-i"), (environ.get(INVENTORY_ENV) or None, INVENTORY_ENV)):
        if text is None:
            continue
        path = resolve(text)
        if not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise UsageError(f"inventory {path} (from {what}) {problem}")
        return path
    tried = [cwd / "oneoff.yaml", cwd / "inventory.yaml", home / ".config/oneoff/inventory.yaml"]
    for path in tried:
        if path.is_file():
            return path
    raise UsageError(
        f"no inventory found: -i not given, ${INVENTORY_ENV} not set, and none of "
        f"{', '.join(map(str, tried))} exists; pass -i PATH"
    )


# --------------------------------------------------------------------------- loading


def load_inventory(path: Path) -> Inventory:
    """Read and validate *path*; every problem found is one line of the InventoryError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read the inventory: {exc}") from None
    key = _cache_key(path, data)
    cached = _read_cache(key)
    if cached is not None:
        return cached
    from oneoff.config.schema import validate

    inventory = validate(path, data)
    _write_cache(key, inventory)
    return inventory


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "oneoff" / "inventories"


def _cache_key(path: Path, data: bytes) -> str:
    """Content, location (relative paths resolve against it), home (~) and our version."""
    digest = hashlib.sha256()
    for part in (__version__, str(path.absolute()), str(Path.home()), os.fsdecode(data)):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


def _read_cache(key: str) -> Inventory | None:
    try:
        record = json.loads((_cache_dir() / f"{key}.json").read_text())
        return Inventory.from_json(record)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(key: str, inventory: Inventory) -> None:
    """Best effort, atomic, private: a read-only home only costs the validation time."""
    import tempfile

    directory = _cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".inventory-")
        with os.fdopen(fd, "w") as handle:
            json.dump(inventory.to_json(), handle)
        os.replace(tmp, directory / f"{key}.json")
    except OSError:
        pass
