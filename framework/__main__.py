"""``python -m framework``: the same as the ``framework`` command."""

from framework.cli import main

main()
