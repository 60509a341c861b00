"""The one place user-supplied strings become remote shell text.

Every argument that reaches a shell on a host goes through :func:`quote` (via
:func:`render`); builders elsewhere return argv lists, never shell strings.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


def quote(word: str) -> str:
    """Quote one word for a POSIX shell so it is passed through literally.

    ``shlex.quote`` single-quotes anything unsafe; a NUL cannot be passed in an
    argv at all, so it is refused instead of being silently truncated.
    """
    if "\0" in word:
        raise ValueError("an argument cannot contain a NUL byte")
    return shlex.quote(word)


def render(argv: Sequence[str]) -> str:
    """Render an argv list as shell text that the remote ``sh`` splits back into *argv*."""
    return " ".join(quote(word) for word in argv)
