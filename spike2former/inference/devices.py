"""Device and precision selection, with a note when a request cannot be honoured."""

from __future__ import annotations

import platform

import torch

from ..errors import S2FError

PRECISIONS = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp64": torch.float64,
}


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA, then Apple MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise S2FError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise S2FError(f"device {name!r} requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise S2FError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise S2FError("device 'mps' requested but Apple MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise S2FError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def place(device: str, precision: str) -> tuple[torch.device, torch.dtype, str | None]:
    """The device and dtype a network runs on for ``device`` and ``precision`` names, and the
    note of ``resolve_precision`` when the precision falls back."""
    chosen = resolve_device(device)
    dtype, note = resolve_precision(chosen, precision)
    return chosen, dtype, note


def precision_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``fp32`` (the names of ``PRECISIONS``)."""
    return next(name for name, known in PRECISIONS.items() if known == dtype)


def resolve_precision(device: torch.device, precision: str) -> tuple[torch.dtype, str | None]:
    """The dtype to run in, and a warning when ``precision`` falls back to fp32 on ``device``."""
    if precision not in PRECISIONS:
        raise S2FError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if device.type == "cpu" and precision == "bf16" and not cpu_has_native_bf16():
        return torch.float32, (
            "bf16 has no hardware support on this CPU (no AVX-512 BF16 or AMX), where it is many "
            "times slower than fp32; running in fp32"
        )
    unsupported = {
        "cpu": {"fp16"},
        "mps": {"bf16", "fp64"},
        "cuda": set() if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else {"bf16"},
    }.get(device.type, set())
    if precision in unsupported:
        return torch.float32, f"{precision} is not supported on {device.type}; running in fp32"
    return PRECISIONS[precision], None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively.

    On x86 that takes AVX-512 BF16 or AMX; without them PyTorch emulates bfloat16 arithmetic.
    Other architectures are given the benefit of the doubt.
    """
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


class PlacedRunner:
    """What every image runner (``Predictor``, ``firing.FiringRun``) resolves the same way from
    its ``device``, ``precision``, ``imgsz`` and ``max_memory`` settings: the device and dtype it
    runs in (``precision_note`` says why a precision fell back), the short side images are
    resized to (the model's test size by default, 0 = native size) and the memory cap."""

    def __init__(
        self,
        test_size: int,
        device: str,
        precision: str,
        imgsz: int | None,
        max_memory: float | None,
    ) -> None:
        self.device, self.dtype, self.precision_note = place(device, precision)
        self.imgsz = test_size if imgsz is None else imgsz
        self.max_memory = max_memory

    @property
    def precision(self) -> str:
        """The precision actually used (after any fallback)."""
        return precision_name(self.dtype)
