"""The daemon's process-wide settings, applied in a process of their own."""

from __future__ import annotations

import platform
import subprocess
import sys

SCRIPT = """
import gc
from harvester.service import tuning
before = gc.get_freeze_count()
tuning.tune_for_a_long_harvest()
print(before, gc.get_freeze_count() > before, gc.get_threshold()[0], tuning._fix_mmap_threshold())
"""


def test_the_collector_is_tuned_and_glibc_takes_the_mmap_threshold() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    )
    _, frozen, young, mallopt_took = result.stdout.split()
    # Freezing moves every object alive now out of the collector's sight: the count of
    # frozen objects grows (from 0, or, on 3.12, from what it froze at start-up).
    assert frozen == "True"
    assert int(young) == 20_000
    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert mallopt_took == str(on_glibc)
