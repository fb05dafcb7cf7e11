"""`python -m harvester.dataset STORE DIR`: one export run as a child process
(`dataset.child`)."""

import sys

from harvester.dataset.child import main

sys.exit(main())
