"""What a benchmark's numbers depend on besides its own settings, for its JSON line.

The scripts run as ``python benchmarks/NAME.py``, so this folder is on the import path.
"""

from __future__ import annotations

import platform

import torch


def machine() -> dict[str, object]:
    """Torch's CPU thread count, the torch version and the processor."""
    return {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "processor": platform.processor() or platform.machine(),
    }
