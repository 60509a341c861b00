"""Where the inventory is, before anything reads it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from oneoff.errors import UsageError

__all__ = ["INVENTORY_ENV", "SEARCHED_IN_CWD", "SEARCHED_IN_HOME", "find_inventory"]

INVENTORY_ENV = "ONEOFF_INVENTORY"
SEARCHED_IN_CWD: tuple[str, ...] = ("oneoff.yaml", "inventory.yaml")
SEARCHED_IN_HOME = ".config/oneoff/inventory.yaml"


def find_inventory(explicit: str | None, environ: Mapping[str, str], cwd: Path, home: Path) -> Path:
    """Where the inventory is: ``-i PATH``, ``$ONEOFF_INVENTORY``, ``./oneoff.yaml``,
    ``./inventory.yaml``, ``~/.config/oneoff/inventory.yaml``, first found.

    A path the user named (``-i`` or the variable) must exist: falling through to another
    file would run against hosts they did not mean. *environ*, *cwd* and *home* are
    arguments so tests need not touch the process's own.
    """
    for text, what in ((explicit, "-i"), (environ.get(INVENTORY_ENV) or None, INVENTORY_ENV)):
        if text is None:
            continue
        path = _resolve(text, cwd, home)
        if not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise UsageError(f"inventory {path} (from {what}) {problem}")
        return path
    tried = [*(cwd / name for name in SEARCHED_IN_CWD), home / SEARCHED_IN_HOME]
    for path in tried:
        if path.is_file():
            return path
    raise UsageError(
        f"no inventory found: -i not given, ${INVENTORY_ENV} not set, and none of "
        f"{', '.join(map(str, tried))} exists; pass -i PATH"
    )


def _resolve(text: str, cwd: Path, home: Path) -> Path:
    """``~`` against *home* (not ``$HOME``), relative paths against *cwd*."""
    path = home / text[2:] if text == "~" or text.startswith("~/") else Path(text)
    return path if path.is_absolute() else cwd / path
