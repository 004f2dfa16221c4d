"""``keep_freed_memory``: glibc's allocator keeps freed memory, so large tensors reuse pages."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import resource, sys, torch
from spike2former.inference.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
x = torch.empty(0)
for _ in range(3):  # warm up
    x = torch.ones(64 * 2**20 // 4)
    del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # 20 fresh 64 MB tensors, each written in full
    x = torch.ones(64 * 2**20 // 4)
    del x
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_tensors_are_reused_without_page_faults() -> None:
    applied, kept = _faults("keep")
    _, default = _faults("default")
    if not applied:
        pytest.skip("not glibc")
    pages = 20 * 64 * 2**20 // 4096
    assert default > pages // 2  # each fresh mmap faults its pages in again
    assert kept < pages // 10  # at most two of the twenty tensors fault in
