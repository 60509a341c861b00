"""oneoff: run a twelve-factor app's admin processes as one-off processes on its hosts."""

from typing import TYPE_CHECKING

from oneoff.version import VERSION as __version__

if TYPE_CHECKING:
    from oneoff.api import run

__all__ = ["__version__", "run"]


def __getattr__(name: str) -> object:
    """``oneoff.run`` without importing the whole tool for ``import oneoff``."""
    if name == "run":
        from oneoff.api import run

        return run
    raise AttributeError(f"module 'oneoff' has no attribute {name!r}")
