"""Validation of an inventory file: YAML with line numbers, the schema, the cross-checks.

The one entry point :mod:`oneoff.config.load` imports on a cache miss; importing it
brings in pydantic and ruamel.yaml. Every problem comes back as one
``file:line: dotted.path: what was expected`` line of a single InventoryError.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from oneoff.config.build import build
from oneoff.config.messages import message
from oneoff.config.model import Inventory
from oneoff.config.schema import InventoryFile
from oneoff.config.yamlfile import Locator, parse, plain
from oneoff.errors import InventoryError

__all__ = ["validate"]


def validate(path: Path, data: bytes) -> Inventory:
    """Validate the inventory *data* read from *path*; one line per problem in the error."""
    node = parse(path, data)
    locator = Locator(path, node)
    try:
        model = InventoryFile.model_validate(plain(node))
    except ValidationError as exc:
        problems = [(tuple(err["loc"]), message(err)) for err in exc.errors()]
        raise InventoryError(locator.report(problems)) from None
    return build(path, model, locator)
