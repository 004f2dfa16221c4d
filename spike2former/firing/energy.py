"""Energy estimate of a spiking forward pass, and of the same network run conventionally.

The convention of the SDT / Meta-SpikeFormer / E-SpikeFormer papers (architecture notes, 8.2):
``E = E_AC * SOPs + E_MAC * real MACs`` with E_AC = 0.9 pJ and E_MAC = 4.6 pJ (32-bit float, 45 nm,
Horowitz 2014), where a layer fed by spikes does ``SOPs = dense MACs x mean spike count of its
input`` synaptic operations: an input with integer count k emits k binary spikes over the D
virtual time steps and every spike adds one weight per synapse. The conventional network does every
MAC at E_MAC. ``ACCOUNTING`` below is the single place where each kind of operation is decided;
``EnergyMeter`` applies it to whatever the model actually computes, operation by operation, with
dense MAC counts from ``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from ..modeling.neuron import SpikingNeuron
from .operations import (
    ELEMENTWISE_PRODUCTS,
    PRODUCTS,
    WEIGHTED,
    is_rearrangement,
    op_name,
)
from .parts import network_part, part_order


@dataclass(frozen=True)
class EnergyConstants:
    """Energy per operation in picojoules (Horowitz 2014, 45 nm, 32-bit float)."""

    mac_pj: float = 4.6
    ac_pj: float = 0.9


@dataclass(frozen=True)
class Rule:
    """How one kind of operation is counted, and why."""

    key: str
    operation: str
    counted_as: str
    reason: str


ACCOUNTING: tuple[Rule, ...] = (
    Rule(
        "spike x weights",
        "convolution or linear layer fed by a neuron (every conv/linear except the first conv)",
        "AC: dense MACs x mean spike count of the input",
        "each binary spike adds one weight per synapse; the neuron's 1/D and the mask "
        "embedding's x4 are folded into the weights, so a count k costs k accumulates",
    ),
    Rule(
        "spike x spike",
        "product of two spike tensors (attention q.k^T; k^T.v when computed keys first)",
        "AC: dense MACs x mean spike count of the first operand",
        "the second operand is held as integer counts in accumulators and each spike of the "
        "first adds one of them (spike_train_mode executes it this way); counting coincident "
        "spike pairs instead would give MACs x count1 x count2",
    ),
    Rule(
        "spike x real",
        "product of spikes and real values: attention (q.k^T).v (integer sums times spikes), "
        "the mask product E.F (spiking mask embedding times real mask features), the DCN "
        "modulation a.sample (spiking weights times sampled real values)",
        "AC: dense MACs x mean spike count of the spike operand",
        "each spike selects one real value to accumulate",
    ),
    Rule(
        "real",
        "product with no spike operand: the first convolution (on the image pixels); in SDT-V2 "
        "backbones also the convolutions that follow another convolution with no neuron in "
        "between (RepConv's depthwise 3x3 and second 1x1, SepConv's second 1x1)",
        "MAC: dense MACs",
        "real-valued multiply-accumulates, counted as the network executes them (re-parameterising "
        "a RepConv into one 3x3 convolution on spikes would count differently)",
    ),
    Rule(
        "bilinear",
        "bilinear interpolation of real values: DCN sampling of the real-valued input "
        "projection, FPN upsampling in the pixel decoder",
        "MAC: 4 per output value",
        "four weights times four neighbours; computing the sampling coordinates and weights is "
        "not counted",
    ),
    Rule(
        "folded",
        "BatchNorm, the encoder layer scales (gamma), the shortcut weight w, attention scales "
        "(2/sqrt(d), 1/sqrt(C)), the neurons' 1/D and x4",
        "not counted",
        "folded into the adjacent convolution's weights or the next neuron's threshold at "
        "inference",
    ),
    Rule(
        "additions",
        "residual additions, position and level embeddings, biases",
        "not counted",
        "additions into membrane potentials; not counted in the SDT papers' convention",
    ),
    Rule(
        "neurons",
        "the neurons themselves (clamp, round), the sigmoid of the mask embedding",
        "not counted",
        "neuron dynamics, as in the SDT papers' convention",
    ),
    Rule(
        "post-processing",
        "upsampling the mask logits to the image size, class softmax, combining, arg-max",
        "not counted",
        "outside the network forward",
    ),
)
SPIKE_DRIVEN = frozenset({"spike x weights", "spike x spike", "spike x real"})
_INTERPOLATION_MACS = {"linear": 2, "bilinear": 4, "bicubic": 16, "trilinear": 8}


@dataclass(frozen=True)
class OperationCost:
    """One operation site (an op inside a module), summed over every forward measured.

    ``spike_input`` names the neuron whose spikes drive it (``"a x b"`` when both operands are
    spikes, the first one driving), empty for real-valued operations.
    """

    module: str
    op: str
    rule: str
    spike_input: str
    macs: int
    sops: float

    @property
    def part(self) -> str:
        return network_part(self.module)

    @property
    def spike_driven(self) -> bool:
        return self.rule in SPIKE_DRIVEN

    @property
    def mean_count(self) -> float | None:
        """Mean spike count of the spike operand (SOPs / MACs); None for real operations."""
        return self.sops / self.macs if self.spike_driven and self.macs else None

    def energy_pj(self, constants: EnergyConstants) -> float:
        if self.spike_driven:
            return self.sops * constants.ac_pj
        return self.macs * constants.mac_pj

    def conventional_pj(self, constants: EnergyConstants) -> float:
        return self.macs * constants.mac_pj


@dataclass(frozen=True)
class EnergyTotal:
    """Per-image totals of a part (or of the whole network)."""

    name: str
    macs: float
    sops: float
    real_macs: float
    energy_mj: float
    conventional_mj: float

    @property
    def ratio(self) -> float:
        """Conventional / spiking energy."""
        return self.conventional_mj / self.energy_mj if self.energy_mj else float("inf")

    def as_dict(self) -> dict[str, Any]:
        """The fields, then the ratio."""
        return {**asdict(self), "ratio": self.ratio}


@dataclass(frozen=True)
class EnergyReport:
    """What an ``EnergyMeter`` measured over ``images`` images."""

    operations: tuple[OperationCost, ...]
    images: int
    constants: EnergyConstants = EnergyConstants()

    def _total(self, name: str, operations: list[OperationCost]) -> EnergyTotal:
        per_image = 1 / max(self.images, 1)
        c = self.constants
        return EnergyTotal(
            name=name,
            macs=sum(op.macs for op in operations) * per_image,
            sops=sum(op.sops for op in operations if op.spike_driven) * per_image,
            real_macs=sum(op.macs for op in operations if not op.spike_driven) * per_image,
            energy_mj=sum(op.energy_pj(c) for op in operations) * per_image * 1e-9,
            conventional_mj=sum(op.conventional_pj(c) for op in operations) * per_image * 1e-9,
        )

    def by_part(self) -> list[EnergyTotal]:
        """One total per network part, in network order (see ``parts.PARTS``)."""
        groups: dict[str, list[OperationCost]] = {}
        for op in self.operations:
            groups.setdefault(op.part, []).append(op)
        return [self._total(part, groups[part]) for part in sorted(groups, key=part_order)]

    def by_module(self) -> list[EnergyTotal]:
        """One total per module (its operations summed), in the order they first ran."""
        groups: dict[str, list[OperationCost]] = {}
        for op in self.operations:
            groups.setdefault(op.module, []).append(op)
        return [self._total(module, ops) for module, ops in groups.items()]

    def total(self) -> EnergyTotal:
        return self._total("total", list(self.operations))

    def operation_rows(self) -> list[dict[str, Any]]:
        """Every operation with its per-image MACs, SOPs and energies (mJ)."""
        per_image = 1 / max(self.images, 1)
        c = self.constants
        return [
            {
                "module": op.module,
                "part": op.part,
                "op": op.op,
                "rule": op.rule,
                "spike_input": op.spike_input,
                "mean_count": op.mean_count,
                "macs": op.macs * per_image,
                "sops": op.sops * per_image if op.spike_driven else 0.0,
                "energy_mj": op.energy_pj(c) * per_image * 1e-9,
                "conventional_mj": op.conventional_pj(c) * per_image * 1e-9,
            }
            for op in self.operations
        ]


@dataclass(frozen=True)
class _Source:
    name: str
    levels: int
    scale: float


class EnergyMeter:
    """Counts, for every forward of ``model`` inside the context, the dense MACs of each
    operation and the spikes that drive it, and turns them into energy (``report()``).

    Every neuron output is followed through rearrangements (views, reshapes, transposes, zero
    padding); each product is classified by ``ACCOUNTING`` from whether its operands are spikes.
    The mean spike count used for an operation is that of the very tensor it multiplies, in that
    forward. Images are counted from the batch size of the model's input.

    Example::

        with EnergyMeter(model) as meter, torch.no_grad():
            model(images)
        report = meter.report()
        report.total().energy_mj, report.total().ratio
    """

    def __init__(self, model: nn.Module, constants: EnergyConstants | None = None) -> None:
        self.model = model
        self.constants = constants or EnergyConstants()
        self.images = 0
        self._costs: dict[tuple[str, str, str, str], list[float]] = {}
        self._tags: dict[int, tuple[weakref.ref, _Source]] = {}
        self._stack: list[str] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._flops: FlopCounterMode | None = None
        self._mode: _Accountant | None = None
        self._frozen: list[nn.Parameter] = []

    def __enter__(self) -> EnergyMeter:
        if self._mode is not None:
            raise RuntimeError("this EnergyMeter is already active")
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._enter_module(name)))
            self._handles.append(module.register_forward_hook(self._leave_module, always_call=True))
            if isinstance(module, SpikingNeuron):
                source = _Source(name, module.levels, module.scale)
                self._handles.append(module.register_forward_hook(self._tagger(source)))
        # Inference only. FlopCounterMode's module tracker cannot follow a parameter passed to a
        # module (the decoder's query_pos) under no_grad, so parameters are frozen meanwhile.
        self._frozen = [p for p in self.model.parameters() if p.requires_grad]
        for parameter in self._frozen:
            parameter.requires_grad_(False)
        self._flops = FlopCounterMode(display=False)
        self._flops.__enter__()
        self._mode = _Accountant(self)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._mode is not None and self._flops is not None
        self._mode.__exit__(*exc)
        self._flops.__exit__(*exc)
        self._mode = self._flops = None
        for parameter in self._frozen:
            parameter.requires_grad_(True)
        self._frozen = []
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._tags.clear()
        self._stack.clear()

    def reset(self) -> None:
        self._costs.clear()
        self.images = 0

    def report(self) -> EnergyReport:
        operations = tuple(
            OperationCost(module, op, rule, spike_input, int(macs), sops)
            for (module, op, rule, spike_input), (macs, sops) in self._costs.items()
        )
        return EnergyReport(operations, self.images, self.constants)

    # Module context and spike tags -------------------------------------------------------------

    def _enter_module(self, name: str):  # noqa: ANN202 - a forward pre-hook
        def enter(module: nn.Module, args: tuple) -> None:
            if module is self.model:
                self._stack.clear()
                self._tags.clear()
                if args and isinstance(args[0], Tensor) and args[0].dim() > 0:
                    self.images += args[0].shape[0]
            self._stack.append(name)

        return enter

    def _leave_module(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self._stack:
            self._stack.pop()

    def _tagger(self, source: _Source):  # noqa: ANN202 - a forward hook
        def tag(module: nn.Module, args: tuple, output: Tensor) -> None:
            self._tag(output, source)

        return tag

    def _tag(self, tensor: Tensor, source: _Source) -> None:
        self._tags[id(tensor)] = (weakref.ref(tensor), source)

    def source(self, tensor: Any) -> _Source | None:
        """The neuron whose spikes ``tensor`` holds (possibly rearranged), if any."""
        entry = self._tags.get(id(tensor)) if isinstance(tensor, Tensor) else None
        return entry[1] if entry is not None and entry[0]() is tensor else None

    # Accounting --------------------------------------------------------------------------------

    def _record(self, op: str, rule: str, spike_input: str, macs: int, sops: float) -> None:
        module = self._stack[-1] if self._stack else ""
        cost = self._costs.setdefault((module, op, rule, spike_input), [0, 0.0])
        cost[0] += macs
        cost[1] += sops

    def _product(self, func: Any, args: tuple, kwargs: dict) -> Any:
        tensors = [x for x in tree_leaves((args, kwargs)) if isinstance(x, Tensor)]
        spikes = [(t, s) for t in tensors if (s := self.source(t)) is not None]
        elementwise = func in ELEMENTWISE_PRODUCTS
        if elementwise and (not spikes or len(tensors) < 2 or min(t.numel() for t in tensors) < 2):
            return func(*args, **kwargs)  # scaling by a parameter or constant: folded
        assert self._flops is not None
        before = self._flops.get_total_flops()
        result = func(*args, **kwargs)
        if elementwise:
            macs = result.numel()
        else:
            macs = (self._flops.get_total_flops() - before) // 2
        if not spikes:
            self._record(op_name(func), "real", "", macs, 0.0)
            return result
        driver, source = spikes[0]
        count = driver.sum(dtype=torch.float64).item() * source.levels / source.scale
        mean_count = count / driver.numel()
        if func in WEIGHTED:
            rule = "spike x weights"
        elif len(spikes) > 1:
            rule = "spike x spike"
        else:
            rule = "spike x real"
        names = " x ".join(s.name for _, s in spikes)
        self._record(op_name(func), rule, names, macs, macs * mean_count)
        return result

    def _after(self, func: Any, args: tuple, kwargs: dict, result: Any) -> None:
        if is_rearrangement(func, args, kwargs):
            source = self.source(args[0]) if args else None
            if source is not None:
                outputs = result if isinstance(result, (tuple, list)) else (result,)
                for out in outputs:
                    if isinstance(out, Tensor):
                        self._tag(out, source)
        elif func is F.grid_sample or func is F.interpolate:
            default = "bilinear" if func is F.grid_sample else "nearest"
            position = 2 if func is F.grid_sample else 3
            mode = args[position] if len(args) > position else kwargs.get("mode", default)
            per_value = _INTERPOLATION_MACS.get(mode, 0)
            if per_value:
                self._record(op_name(func), "bilinear", "", per_value * result.numel(), 0.0)


class _Accountant(TorchFunctionMode):
    """Sends every torch call made while the meter is active through the meter."""

    def __init__(self, meter: EnergyMeter) -> None:
        super().__init__()
        self.meter = meter

    def __torch_function__(
        self, func: Any, types: tuple, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in PRODUCTS:
            return self.meter._product(func, args, kwargs)
        result = func(*args, **kwargs)
        self.meter._after(func, args, kwargs, result)
        return result


def accounting_table() -> list[dict[str, str]]:
    """``ACCOUNTING`` as plain dicts (for JSON headers and documentation)."""
    return [
        {"rule": r.key, "operation": r.operation, "counted_as": r.counted_as, "reason": r.reason}
        for r in ACCOUNTING
    ]
