"""The command line: the only package that imports click."""

from oneoff.cli.main import main

__all__ = ["main"]
