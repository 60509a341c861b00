"""The wording the inventory's errors share: "did you mean", short listings, values as written.

Both the file's validation and target selection on the command line explain a bad
name the same way, so they use these instead of each phrasing it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["listing", "show", "suggest"]


def suggest(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean web1?"`` for the closest candidate, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def listing(names: Iterable[str], limit: int = 20) -> str:
    """A comma list cut at *limit*, so an error about a 500-host file stays one line."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


def show(value: object) -> str:
    """A value as the user wrote it in YAML, short enough for a one-line error."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
