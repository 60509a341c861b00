"""The validated-inventory cache: an :class:`Inventory` as JSON, keyed by what it came from.

Validation needs pydantic and ruamel.yaml (~90 ms of start-up, measured); an unchanged
file is read back from here instead. The key covers the file's content and location
(relative paths resolve against it), the home folder (``~``) and oneoff's version (a
new version may validate differently), so a stale entry is never hit, only orphaned.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from oneoff.config.model import Inventory
from oneoff.values import Task
from oneoff.version import VERSION as __version__

__all__ = ["cache_key", "read_cached", "write_cached"]


def cache_key(path: Path, data: bytes) -> str:
    digest = hashlib.sha256()
    for part in (__version__, str(path.absolute()), str(Path.home()), os.fsdecode(data)):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


def read_cached(key: str) -> Inventory | None:
    """The cached inventory, or None when there is none or it cannot be read back."""
    try:
        record = json.loads((_cache_dir() / f"{key}.json").read_text())
        return _from_record(record)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_cached(key: str, inventory: Inventory) -> None:
    """Best effort, atomic, private: a read-only home only costs the validation time."""
    import tempfile

    directory = _cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".inventory-")
        with os.fdopen(fd, "w") as handle:
            json.dump(_to_record(inventory), handle)
        os.replace(tmp, directory / f"{key}.json")
    except OSError:
        pass


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "oneoff" / "inventories"


def _to_record(inventory: Inventory) -> dict[str, Any]:
    return {
        "path": str(inventory.path),
        "hosts": list(inventory.hosts),
        "groups": {g: list(h) for g, h in inventory.groups.items()},
        "tasks": {name: asdict(task) for name, task in inventory.tasks.items()},
        "layers": {h: dict(layer) for h, layer in inventory.layers.items()},
        "roles": {h: list(r) for h, r in inventory.roles.items()},
        "primary": sorted(inventory.primaries),
    }


def _from_record(record: Mapping[str, Any]) -> Inventory:
    """JSON has no tuples: give back the types :func:`oneoff.config.build.build` makes."""
    tasks = {
        name: Task(**{**fields, "command": tuple(fields["command"])})
        for name, fields in record["tasks"].items()
    }
    return Inventory(
        path=Path(record["path"]),
        hosts=tuple(record["hosts"]),
        groups={g: tuple(h) for g, h in record["groups"].items()},
        tasks=tasks,
        layers={h: dict(layer) for h, layer in record["layers"].items()},
        roles={h: tuple(r) for h, r in record["roles"].items()},
        primaries=frozenset(record["primary"]),
    )
