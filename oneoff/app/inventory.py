"""The inventory as the use cases see it: where it comes from, and how its hosts are reached."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from oneoff.client.connections import Connections
    from oneoff.client.fleet import Policy
    from oneoff.config.model import HostSettings, Inventory, Overrides

    InventorySource = str | Path | Inventory | None
    """``-i PATH`` or ``inventory=``: a path, an inventory already loaded, or None (search)."""


def open_inventory(source: InventorySource) -> Inventory:
    """The inventory *source* names; None searches where ``find_inventory`` says."""
    from oneoff.config.model import Inventory

    if isinstance(source, Inventory):
        return source
    from oneoff.config.find import find_inventory
    from oneoff.config.load import load_inventory

    explicit = str(source) if source is not None else None
    return load_inventory(find_inventory(explicit, os.environ, Path.cwd(), Path.home()))


Found = TypeVar("Found")


@dataclass(frozen=True)
class Access:
    """How a use case that only reads (releases, tasks, audit, ps, logs, kill) reaches hosts."""

    accept_new_host_keys: bool = False
    parallel: int = 32

    @property
    def overrides(self) -> Overrides:
        from oneoff.config.model import Overrides

        return Overrides(host_key_policy="accept-new" if self.accept_new_host_keys else None)

    @property
    def policy(self) -> Policy:
        from oneoff.client.fleet import Policy

        return Policy(parallel=self.parallel, accept_new_host_keys=self.accept_new_host_keys)

    def settings(self, inventory: Inventory, host: str) -> HostSettings:
        return inventory.settings(host, self.overrides)

    def connections(self, inventory: Inventory) -> Connections:
        """The invocation's connections to *inventory*'s hosts (close them, or use ``with``)."""
        from oneoff.client.connections import Connections

        overrides = self.overrides
        return Connections(
            lambda host: inventory.settings(host, overrides),
            accept_new_host_keys=self.accept_new_host_keys,
        )

    def each_host(
        self,
        inventory: Inventory,
        hosts: Sequence[str],
        one: Callable[[Connections, HostSettings], Found],
    ) -> list[Found]:
        """*one* on every host, ``parallel`` at a time, one connection each, in host order."""
        from concurrent.futures import ThreadPoolExecutor

        with (
            self.connections(inventory) as pool,
            ThreadPoolExecutor(max_workers=max(1, min(self.parallel, len(hosts)))) as workers,
        ):
            return list(workers.map(lambda host: one(pool, self.settings(inventory, host)), hosts))


DEFAULT_ACCESS = Access()
