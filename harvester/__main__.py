"""`python -m harvester` runs the CLI."""

import sys

from harvester.cli import main

if __name__ == "__main__":  # not when a worker process (derive_pool) imports it
    sys.exit(main())
