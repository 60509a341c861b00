"""The inventory file as YAML: parsed keeping line numbers, and key paths located in it.

ruamel.yaml's round-trip loader is used (not PyYAML's) because it records the line
of every key and item; :class:`Locator` turns a pydantic ``loc`` into
``file:line: dotted.path`` with it. Imported only when the file must be validated.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from oneoff.config.hints import show
from oneoff.errors import InventoryError

__all__ = ["Loc", "Locator", "Problem", "parse", "plain"]

Loc = tuple[object, ...]
"""A key path as pydantic gives it: ``("groups", "prod", "hosts", 2)``."""
Problem = tuple[Loc, str]


def parse(path: Path, data: bytes) -> dict[Any, Any]:
    """The top-level mapping with ruamel's line info; InventoryError naming the line if not."""
    node = _load(path, _decode(path, data))
    if node is None:
        raise InventoryError(f"{path}: the inventory is empty; it needs at least a hosts: mapping")
    if not isinstance(node, dict):
        raise InventoryError(
            f"{path}:1: expected a mapping at the top level (defaults:, hosts:, groups:, "
            f"tasks:), got {show(plain(node))}"
        )
    return node


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(f"{path}: cannot read the inventory: {exc}") from None


def _load(path: Path, text: str) -> Any:
    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise InventoryError(f"{path}{line}: YAML syntax error: {problem}") from None
    except YAMLError as exc:
        raise InventoryError(f"{path}: YAML syntax error: {exc}") from None


def plain(node: Any) -> Any:
    """ruamel's round-trip containers and scalar subclasses as plain Python values."""
    if isinstance(node, dict):
        return {plain(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for kind in (str, int, float):
        if isinstance(node, kind):
            return kind(node)
    return node


class Locator:
    """Maps a pydantic ``loc`` to ``file:line: dotted.path`` using ruamel's line info."""

    def __init__(self, path: Path, root: Any) -> None:
        self.path = path
        self.root = root

    def line(self, loc: Loc) -> int:
        """1-based line of the deepest part of *loc* present in the file."""
        node = self.root
        line = getattr(getattr(node, "lc", None), "line", 0) or 0
        for part in loc:
            step = _step(node, part)
            if step is None:
                break
            node, line = step
        return int(line) + 1

    def dotted(self, loc: Loc) -> str:
        """``groups.prod.hosts[2]``: list positions in brackets, mapping keys after dots."""
        node, out = self.root, ""
        for part in loc:
            if part == "[key]":
                continue
            in_list = isinstance(node, list) and isinstance(part, int)
            out += f"[{part}]" if in_list else f"{'.' if out else ''}{part}"
            try:
                node = node[part]
            except (IndexError, KeyError, TypeError):
                node = None
        return out

    def report(self, problems: Iterable[Problem]) -> str:
        """One ``file:line: dotted.path: message`` line per problem, in file order, no repeats."""
        located = sorted(
            ((self.line(loc), self.dotted(loc), message) for loc, message in problems),
            key=lambda p: p[0],
        )
        out: list[str] = []
        for line, dotted, message in located:
            entry = f"{self.path}:{line}: {dotted + ': ' if dotted else ''}{message}"
            if entry not in out:
                out.append(entry)
        return "\n".join(out)


def _step(node: Any, part: object) -> tuple[Any, int] | None:
    """The child at *part* and the line to blame for it, or None when the file lacks it.

    A scalar's line is its value's (where the bad value is); a container's is its key's.
    """
    try:
        if isinstance(node, dict) and part in node:
            child = node[part]
            scalar = child is not None and not isinstance(child, dict | list)
            return child, (_lc(node).value(part) if scalar else _lc(node).key(part))[0]
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            return node[part], _lc(node).item(part)[0]
    except (AttributeError, KeyError, TypeError):
        pass  # e.g. keys brought in by a YAML merge (<<) carry no line of their own
    return None


def _lc(node: Any) -> Any:
    """ruamel's line/column record of a round-trip mapping or sequence (untyped there)."""
    return node.lc
