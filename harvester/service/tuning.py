"""Process-wide settings for a long harvest: the cycle collector and glibc's malloc.

Both are about the daemon's own process, so `harvester run` applies them before the
event loop starts; tests that run the daemon inside pytest do not.

- The cycle collector. Storing answers allocates millions of short-lived tuples and
  dicts, each hundred of which used to set off a young-generation collection that
  walked them, and every full collection walked every object made at start-up
  (modules, settings, the SQL text) again. Freezing what exists after start-up and
  collecting the young generation every 20,000 allocations instead of 700 took
  7-10% off the store thread's CPU per answer (measured alternately on the record
  path). Harvest objects hold no cycles that matter: a cycle waits a little longer.
- glibc's mmap threshold. After the first large free glibc raises it, and from then
  on answers of 130-430 KB come from the heap it keeps, so a 100,000-output harvest
  held 30-35 MB of freed memory. Fixed at 128 KiB, large answers are mapped and
  unmapped as they come and go (peak RSS ~150 -> ~140 MB in `bench/memory.py`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

YOUNG_COLLECTION_EVERY = 20_000  # allocations (the default is 700)
MMAP_THRESHOLD_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def tune_for_a_long_harvest() -> None:
    """Apply both settings; each is skipped where it does not apply."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, older, oldest)
    _fix_mmap_threshold()


def _fix_mmap_threshold() -> bool:
    """True if glibc took the setting (not on other platforms or C libraries)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
