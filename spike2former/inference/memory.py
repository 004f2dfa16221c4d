"""How much memory segmenting an image takes, and how much there is, checked before running.

The network's activations grow with the pixels of its input, so the peak of a forward pass is
``bytes_per_pixel x height x width`` plus what pre- and post-processing hold at the image's own
size. ``bytes_per_pixel`` is measured, not guessed: one forward pass of the network on a small
input, with the storages torch operations create followed until they are freed
(``LiveTensors``), gives the peak of live tensors, and that peak is linear in the pixel count
(spiking attention is computed as q (k^T v), linear in the tokens). The measurement is made only
for inputs that ``COARSE_BYTES_PER_PIXEL`` says might not fit.
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..errors import S2FError

# Decoded image, its float64 normalisation and float32 copy, labels and their resizing.
IMAGE_BYTES_PER_PIXEL = 100
# Above every measured network per pixel of input (float32 1,103 B for SDT-V3 base).
COARSE_BYTES_PER_PIXEL = 4096
# Kept free of the estimate: the allocator's slack and everything else in the process.
HEADROOM = 0.85
PROBE_SIDE = 64
# What one forward pass may take of the host's memory unless told otherwise: a bad size argument
# should not take a shared machine down.
DEFAULT_MAX_MEMORY = 8 * 2**30


class MemoryLimitError(S2FError):
    """An input would need more memory than there is; nothing was allocated for it.
    ``capped_by_user``: the caller's ``max_memory``, not the machine, is what it exceeds."""

    def __init__(self, template: str = "", capped_by_user: bool = False, **fields: object) -> None:
        super().__init__(template, **fields)
        self.capped_by_user = capped_by_user


def gib(nbytes: float) -> str:
    """Bytes for people: ``1.5 GB``, ``12 MB``."""
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.1f} GB"
    return f"{nbytes / 2**20:.0f} MB"


@dataclass(frozen=True)
class MemoryBudget:
    """What a forward pass may take: on the host (the lesser of the free memory, less headroom,
    and the caller's ``max_memory``), and on an accelerator, when it runs on one."""

    host: float | None
    device: float | None
    device_type: str
    user_limit: float | None

    @classmethod
    def now(cls, device: torch.device, max_memory: float | None) -> MemoryBudget:
        free = available_bytes(torch.device("cpu"))
        host = None if free is None else HEADROOM * free
        if max_memory is not None:
            host = max_memory if host is None else min(host, max_memory)
        on_device = available_bytes(device) if device.type != "cpu" else None
        return cls(
            host,
            None if on_device is None else HEADROOM * on_device,
            device.type,
            max_memory,
        )

    def need(self, network_per_pixel: float, network_pixels: int, image_pixels: int) -> Need:
        network = network_per_pixel * network_pixels
        image = IMAGE_BYTES_PER_PIXEL * image_pixels
        if self.device_type == "cpu":
            return Need(network + image, 0.0)
        return Need(image, network)

    def allows(self, need: Need) -> bool:
        host_ok = self.host is None or need.host <= self.host
        return host_ok and (self.device is None or need.device <= self.device)

    def capped_by_user(self, need: Need) -> bool:
        """Whether ``max_memory``, not the machine, is what ``need`` exceeds."""
        return (
            self.user_limit is not None
            and need.host > self.user_limit
            and self.host == self.user_limit
        )

    def shortfall(self, need: Need) -> str:
        """``X GB on cpu, Y GB allowed`` for the side that does not fit."""
        if self.device is not None and need.device > self.device:
            return f"{gib(need.device)} on {self.device_type}, {gib(self.device)} free"
        allowed = "allowed by max_memory" if self.capped_by_user(need) else "free"
        return f"{gib(need.host)} on the host, {gib(self.host or 0)} {allowed}"


@dataclass(frozen=True)
class Need:
    """Bytes on the host and on the accelerator."""

    host: float
    device: float


def available_bytes(device: torch.device) -> int | None:
    """Memory this process can still take on ``device`` (``None``: unknown).

    CPU: the least of the kernel's ``MemAvailable``, the cgroup's limit minus its usage, and the
    address-space limit (``ulimit -v``) minus this process's size. CUDA: the driver's free memory.
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    limits = [
        _meminfo_available(),
        _cgroup_room(),
        _address_space_room(),
    ]
    known = [limit for limit in limits if limit is not None]
    return min(known) if known else None


def network_peak_per_pixel(
    scores: Callable[[Tensor], Tensor], dtype: torch.dtype, device: torch.device
) -> float:
    """Peak live bytes of ``scores`` per input pixel, measured on a ``PROBE_SIDE`` square."""
    probe = torch.zeros(1, 3, PROBE_SIDE, PROBE_SIDE, dtype=dtype, device=device)
    with torch.inference_mode(), LiveTensors() as tracker:
        scores(probe)
    return tracker.peak / PROBE_SIDE**2


class LiveTensors(TorchDispatchMode):
    """Peak bytes of the storages that torch operations create, each counted from its creation
    until it is freed (saved tensors of the backward pass included: a storage's Python object
    lives as long as the storage)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._sizes: dict[int, int] = {}

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        for value in tree_flatten(result)[0]:
            if isinstance(value, Tensor):
                self._hold(value)
        return result

    def _hold(self, tensor: Tensor) -> None:
        storage = tensor.untyped_storage()
        address = storage.data_ptr()
        if address == 0 or address in self._sizes:
            return
        self._sizes[address] = storage.nbytes()
        self.live += storage.nbytes()
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._release, address)

    def _release(self, address: int) -> None:
        self.live -= self._sizes.pop(address, 0)


def _meminfo_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE)
    return int(match[1]) * 1024 if match else None


def _cgroup_room() -> int | None:
    folder = Path("/sys/fs/cgroup")
    try:
        limit = (folder / "memory.max").read_text().strip()
        used = int((folder / "memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def _address_space_room() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        status = Path(f"/proc/{os.getpid()}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmSize:\s+(\d+) kB", status, re.MULTILINE)
    return max(0, soft - int(match[1]) * 1024) if match else None
