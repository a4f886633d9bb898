"""glibc allocator settings for CPU training.

PyTorch's CPU tensors come straight from ``malloc``. glibc serves blocks above its mmap threshold (dynamic, at most
32 MiB) with a fresh ``mmap`` and unmaps them on free, so every training step page-faults its large activations in
again, and the 4B-row rotated batch of SSD-KD (activations of 25-80 MiB at 112 px) pays that on nearly every layer.
Serving everything from the heap and not trimming it keeps freed blocks for the next step, so the page faults (and
the kernel's zeroing of fresh pages) are paid once instead of every step; the larger rotated batch gains most.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_SETTINGS = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 256 * 2**20))


def keep_freed_memory() -> bool:
    """Make glibc keep and reuse freed memory instead of returning it to the OS (process-wide, idempotent).

    Peak memory is unchanged; memory freed after the peak stays with the process until it exits. Returns whether
    the settings were applied (False off Linux or on a libc without ``mallopt``, e.g. musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in _SETTINGS)
