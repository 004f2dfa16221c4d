"""Keep freed memory in the process for reuse, so large activations do not page-fault anew.

glibc serves every allocation above 32 MB with a fresh ``mmap`` and returns it with ``munmap``
on free. A 512x512 forward pass allocates about 1 GB of such tensors (stride-2 maps of 256
channels, full-size mask and score maps), and the kernel must fault in and zero every page of
them on each image again: about a fifth of the CPU inference time on a small VM. Switching off
mmap for allocations (``M_MMAP_MAX = 0``) and heap trimming (``M_TRIM_THRESHOLD``) makes freed
tensors reusable by the next ones. The cost is a process that keeps its peak memory until it
exits, which suits a command-line run. torch asks for aligned blocks, so the first few freed
tensors leave holes a little too small for the next request and a handful of early tensors take
fresh pages before the heap settles; from then on they are all reused. Elsewhere than glibc
nothing changes; jemalloc or tcmalloc (``LD_PRELOAD``) give the same effect.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Configure glibc's allocator as above (once per process); True if it was applied."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
