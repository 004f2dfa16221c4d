"""``keep_freed_memory``: glibc's allocator keeps freed memory, so large tensors reuse pages."""

from __future__ import annotations

import subprocess
import sys

import pytest

_TENSOR_PAGES = 64 * 2**20 // 4096
_ROUNDS = 30
_STEADY = 10  # the last rounds, after the heap has settled

_PROBE = """
import resource, sys, torch
from spike2former.inference.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
faults = []
for _ in range(int(sys.argv[2])):  # fresh 64 MB tensors, each written in full, then freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(64 * 2**20 // 4)
    del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, *faults)
"""


def _faults(mode: str) -> tuple[bool, list[int]]:
    """Minor page faults of each round, in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, str(_ROUNDS)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0] == "True", [int(n) for n in out[1:]]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_tensors_are_reused_without_page_faults() -> None:
    """Without the setting every tensor faults its pages in anew; with it, once the heap has
    settled (torch asks for aligned blocks, so the first few frees leave holes slightly too
    small and a handful of tensors take fresh pages), no round faults at all."""
    applied, kept = _faults("keep")
    _, default = _faults("default")
    if not applied:
        pytest.skip("not glibc")
    assert all(n > _TENSOR_PAGES // 2 for n in default[-_STEADY:]), default
    assert sum(kept[-_STEADY:]) < _TENSOR_PAGES // 10, kept
    assert sum(kept) < _ROUNDS * _TENSOR_PAGES // 2, kept  # most rounds reuse freed pages
