"""``python -m batchfrac`` runs the command line (same as the ``batchfrac`` script)."""

from .cli import main

main()
