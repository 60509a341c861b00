"""oneoff: run a twelve-factor app's admin processes as one-off processes on its hosts."""

__version__ = "0.1.0"
