"""Reading the inventory: from the cache when the file is unchanged, else validated.

The validation modules (pydantic, ruamel.yaml) are imported only on a cache miss, so
a run against an unchanged inventory starts without them.
"""

from __future__ import annotations

from pathlib import Path

from oneoff.config.cache import cache_key, read_cached, write_cached
from oneoff.config.model import Inventory
from oneoff.errors import InventoryError

__all__ = ["load_inventory"]


def load_inventory(path: Path) -> Inventory:
    """Read and validate *path*; every problem found is one line of the InventoryError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read the inventory: {exc}") from None
    key = cache_key(path, data)
    cached = read_cached(key)
    if cached is not None:
        return cached
    from oneoff.config.validate import validate

    inventory = validate(path, data)
    write_cached(key, inventory)
    return inventory
