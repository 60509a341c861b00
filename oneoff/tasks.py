"""Named admin commands, wherever they are defined."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RunPolicy = Literal["once", "each"]


@dataclass(frozen=True)
class Task:
    """One named admin command, e.g. ``migrate`` -> ``python manage.py migrate --noinput``.

    ``source`` says where it was defined (``inventory.yaml:42``, ``pyproject.toml``,
    ``Procfile``, ``preset: django``) so ``oneoff tasks`` can show it and collisions
    can be explained.
    """

    name: str
    command: tuple[str, ...]
    source: str
    run: RunPolicy = "once"
    lock: str | None = None
    timeout: float | None = None
    tty: bool | None = None
    description: str | None = None
