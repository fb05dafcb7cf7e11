"""`python -m harvester` runs the CLI."""

import sys

from harvester.cli import main

sys.exit(main())
