"""``python -m oneoff``."""

from oneoff.cli.main import main

main()
