"""Keep freed host memory in the process, for the MD engines' per-step allocations.

Every MD step's model call allocates and frees arrays of a few hundred kB to a few MB on the
host. glibc's malloc hands allocations above its mmap threshold fresh pages from the kernel and
trims the top of its heap back to the kernel when they are freed, so every step pays page faults
for memory it has just returned: 200 to 1500 minor faults per call of the quickstart SchNet on
50-atom LGPS, and 5 to 10 % of its time. Fixed mmap and trim thresholds keep that memory in the
heap for the next step, as torch's caching allocator does on a GPU.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest on 64-bit systems: bigger arrays still get their own pages
TRIM_THRESHOLD_BYTES = 512 * 1024 * 1024  # freed memory kept at the top of the heap before it goes back


def retain_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory for reuse; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
