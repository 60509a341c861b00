"""pydantic's errors rewritten the way a person editing YAML needs them.

pydantic speaks of Python types ("Input should be a valid string"); the user wrote
YAML. Each error becomes "expected <what this key holds>, got <what was written>",
an unknown key names the known ones (or where the key belongs), and the location is
left to :class:`oneoff.config.yamlfile.Locator`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from oneoff.config.hints import show
from oneoff.config.schema import (
    ENTRY_EXPECTED,
    EXPECTED,
    HOST_ONLY,
    SETTINGS_KEYS,
    TOP_EXPECTED,
    Host,
    InventoryFile,
    model_at,
)
from oneoff.config.yamlfile import Loc

__all__ = ["message"]

# What a pydantic error type asks for, when the key alone does not say.
_EXPECTED_BY_TYPE: dict[str, str] = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping of settings",
    "model_attributes_type": "a mapping of settings",
    "float_type": "a number",
}
_MAPPING_TYPES = ("model_type", "model_attributes_type")


def message(err: Mapping[str, Any]) -> str:
    """The text for one pydantic error (an item of ``ValidationError.errors()``)."""
    kind: str = err["type"]
    loc: Loc = tuple(err["loc"])
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        return f"expected one of: {', '.join(allowed)}, got {show(err['input'])}"
    expected = _expected(kind, loc)
    if expected is None:
        text = str(err["msg"])
        return text[:1].lower() + text[1:] + f", got {show(err['input'])}"
    quote = " (write it in quotes)" if kind == "string_type" and _is_number(err["input"]) else ""
    return f"expected {expected}, got {show(err['input'])}{quote}"


def _expected(kind: str, loc: Loc) -> str | None:
    """What belongs at *loc*: by section, by entry, by key, else by pydantic's type."""
    last = loc[-1] if loc else None
    if len(loc) == 1 and last in TOP_EXPECTED:
        return TOP_EXPECTED[str(last)]
    if len(loc) == 2 and kind in _MAPPING_TYPES:
        return ENTRY_EXPECTED.get(str(loc[0]), "a mapping")
    if isinstance(last, str) and last in EXPECTED and last != "[key]":
        return EXPECTED[last]
    return _EXPECTED_BY_TYPE.get(kind)


def _is_number(value: object) -> bool:
    """A host named 2 in YAML is the integer 2; quoting it makes it the name."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unknown_key(loc: Loc) -> str:
    key = str(loc[-1])
    model = model_at(loc[:-1])
    if model is None:
        return "unknown key"
    if key in HOST_ONLY and model is not Host:
        return f"unknown key here: {key} can only be set on a host"
    if model is InventoryFile and key in SETTINGS_KEYS:
        return f"unknown key at the top level: {key} belongs under defaults:, a group or a host"
    known = sorted(model.model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f", did you mean {close[0]}?" if close else ""
    return f"unknown key{hint} (known keys: {', '.join(known)})"
