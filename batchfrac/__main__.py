"""``python -m batchfrac`` runs the command line (same as the ``batchfrac`` script)."""

from .cli import main

if __name__ == "__main__":  # not when a spawned worker process imports it
    main()
