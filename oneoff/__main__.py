"""``python -m oneoff``."""

from oneoff.cli import main

main()
