"""The tensors a configuration's network holds (names, shapes, dtypes), known before allocating.

A model file or checkpoint describes its network; before the network is built, its tensors are
laid out on PyTorch's meta device (shapes and dtypes, no storage), so that the memory they need
can be compared with the memory there is, and the tensors of the file with those of the network,
at no cost however large the description.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from .config import ModelConfig
from .errors import CheckpointError
from .inference.memory import available_bytes, gib
from .modeling.spike2former import Spike2Former

# name -> (shape, dtype name as torch spells it: "float32", "int64", ...)
Layout = dict[str, tuple[tuple[int, ...], str]]

# Copies of the weights alive at once while a file is loaded or converted: the tensors read from
# the file, the network they are copied into, and the serialised bytes when a file is written.
COPIES_WHILE_LOADING = 3

_FLOATS = ("float16", "bfloat16", "float32", "float64")
_INTEGERS = ("uint8", "int8", "int16", "int32", "int64")
_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
_BYTES |= {"uint8": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8}


def state_layout(config: ModelConfig) -> Layout:
    """The state dict of ``Spike2Former(config)``, without allocating it."""
    with torch.device("meta"), _NoInitialisation():
        network = Spike2Former(config)
    return tensor_layout(network.state_dict())


def tensor_layout(state: Mapping[str, Tensor]) -> Layout:
    """The layout of tensors at hand (a checkpoint already read)."""
    return {key: (tuple(value.shape), dtype_name(value.dtype)) for key, value in state.items()}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def layout_bytes(layout: Layout) -> int:
    total = 0
    for shape, dtype in layout.values():
        count = 1
        for size in shape:
            count *= size
        total += count * _BYTES.get(dtype, 8)  # 8: as wide as any dtype a network holds
    return total


def check_fits_in_memory(layout: Layout, source: str, available: int | None = None) -> None:
    """Raise ``CheckpointError`` when loading a network of ``layout`` would need more memory than
    ``available`` (default: what this process can still take on the CPU; unknown: no check)."""
    weights = layout_bytes(layout)
    needed = COPIES_WHILE_LOADING * weights
    if available is None:
        available = available_bytes(torch.device("cpu"))
    if available is not None and needed > available:
        raise CheckpointError(
            f"{source}: the network it describes has {gib(weights)} of weights; loading it "
            f"needs about {gib(needed)}, more than the {gib(available)} of memory available"
        )


def check_layout(expected: Layout, found: Layout, source: str) -> None:
    """Raise ``CheckpointError`` listing every missing, unexpected, misshaped or mistyped tensor
    of ``found`` (a file's or a checkpoint's) against ``expected`` (the network's). Any floating
    dtype may stand for another (it is converted when copied), and any integer one likewise."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [
        f"{k}: file {list(found[k][0])} vs model {list(shape)}"
        for k, (shape, _) in expected.items()
        if k in found and found[k][0] != shape
    ]
    mistyped = [
        f"{k}: file {found[k][1]} vs model {dtype}"
        for k, (_, dtype) in expected.items()
        if k in found and not _convertible(found[k][1], dtype)
    ]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", misshaped),
        ("dtype mismatches", mistyped),
    ):
        if items:
            shown = ", ".join(item[:200] for item in items[:5])
            more = f", ... ({len(items)} in all)" if len(items) > 5 else ""
            problems.append(f"{label}: {shown}{more}")
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the model; " + "; ".join(problems))


def _convertible(found: str, expected: str) -> bool:
    return any(found in kind and expected in kind for kind in (_FLOATS, _INTEGERS))


class _NoInitialisation(TorchFunctionMode):
    """Skips ``torch.nn.init`` functions: meta tensors hold no values to initialise, and tracing
    some of these functions on the meta device would load torch's compiler stack (seconds)."""

    def __torch_function__(  # noqa: ANN204 - the signature of TorchFunctionMode
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return kwargs.get("tensor", args[0] if args else None)
        return func(*args, **kwargs)
