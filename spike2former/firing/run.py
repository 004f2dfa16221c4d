"""Firing rates (and energy) of a model over a set of images, one stateless forward per image.

This is ``s2f firing-rates`` as a library: ``FiringRun`` preprocesses each RGB image as the official
test pipeline does (``inference.preprocess``), runs the *reference* network (BatchNorm unfolded,
attention in the official q.k^T-first order, all T copies) in evaluation mode under a
``FiringRateMonitor`` and, optionally, an ``EnergyMeter``, and assembles JSON/CSV reports.

What is measured: by default every decoder stage is embedded (``model(x, return_aux=True)``), as
in the official code, where the head always computes all seven stages even at inference; this is
the definition of the official firing table (the mask-embedding neurons see the stacked seven
stages). ``all_stages=False`` measures the s2f inference path instead, which embeds only the last
stage; only the mask-embedding neurons and the mask-embedding energy change.

Each image is measured alone and added to the run's ``FiringTotals`` (exact sums), so a run can be
split over processes (``gather``, see ``shares``) and still report what one process would.
"""

from __future__ import annotations

import copy
import csv
import io
import time
from contextlib import ExitStack
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from ..inference.devices import PlacedRunner
from ..inference.memory import DEFAULT_MAX_MEMORY
from ..inference.pass_memory import PassMemory, reference_bound
from ..inference.preprocess import network_input_size, normalize, resize_image
from ..modeling.spike2former import Spike2Former
from ..training.distributed import DistributedContext
from .energy import EnergyConstants, EnergyMeter, EnergyReport, accounting_table
from .monitor import FiringRateMonitor, LayerFiring, by_part, pooled
from .records import ImageRecord
from .shares import RunShare, gather_share
from .totals import FiringTotals

DEFINITIONS = {
    "D": "virtual time steps of the layer: its neurons emit an integer count k in [0, D] as k "
    "binary spikes (4 in the SDT-V3 backbone, 8 elsewhere)",
    "scale": "constant the layer's output is multiplied by (the mask embedding's alpha = 4); "
    "folded into the next weights, it does not change the spike count",
    "outputs": "neuron outputs observed, summed over all images",
    "spikes": "binary spikes emitted, i.e. the sum of k over those outputs",
    "mean_count": "spikes / outputs: mean integer spike count per output per real time step, in "
    "[0, D]; the official definition (tools/cal_firing_num.py: mean of output x D)",
    "rate": "mean_count / D: probability of a spike at one virtual time step, in [0, 1]",
    "zero_frac": "fraction of outputs with k = 0",
    "sat_frac": "fraction of outputs with k = D",
    "pooled": "parts and totals pool their layers: mean_count = spikes / outputs and rate = "
    "spikes / sum(outputs x D)",
    "images": "each image is resized and normalised as the official test pipeline, then run "
    "alone (batch of one) through the network in evaluation mode; neurons are stateless, so "
    "no state carries over between images",
}
ENERGY_DEFINITIONS = {
    "macs": "dense multiply-accumulates of the operation per image (FlopCounterMode FLOPs / 2, "
    "or 4 per value for bilinear interpolation)",
    "sops": "synaptic operations per image: macs x mean spike count of the spike operand, "
    "measured on the very tensor multiplied",
    "energy_mj": "0.9 pJ x sops for spike-driven operations, 4.6 pJ x macs for real ones; mJ "
    "per image",
    "conventional_mj": "the same network run as a conventional (non-spiking) one: 4.6 pJ x macs",
    "ratio": "conventional_mj / energy_mj",
}
CSV_COLUMNS = (
    "section",
    "part",
    "name",
    "op",
    "rule",
    "D",
    "outputs",
    "spikes",
    "mean_count",
    "rate",
    "zero_frac",
    "sat_frac",
    "macs",
    "sops",
    "energy_mj",
    "conventional_mj",
    "ratio",
    "spike_input",
)


class FiringRun(PlacedRunner):
    """Measures firing rates (and energy) image by image; see the module docstring.

    Args:
        model: the network; a private evaluation-mode copy is measured.
        device, precision, imgsz: as ``inference.predictor.Predictor`` (imgsz: short side,
            default the model's test size, 0 = native size).
        all_stages: embed every decoder stage (official definition) or only the last one.
        energy: also measure energy (slower: every torch call is inspected).
        max_memory: bytes of host memory one image's forward may take (``None``: what the
            machine has free); larger images are refused (``check_fits``).
    """

    def __init__(
        self,
        model: Spike2Former,
        device: str = "auto",
        precision: str = "fp32",
        imgsz: int | None = None,
        all_stages: bool = True,
        energy: bool = False,
        constants: EnergyConstants | None = None,
        max_memory: float | None = DEFAULT_MAX_MEMORY,
    ) -> None:
        super().__init__(model.config.test_size, device, precision, imgsz, max_memory)
        self.network = copy.deepcopy(model).eval().to(device=self.device, dtype=self.dtype)
        self.all_stages = all_stages
        self.monitor = FiringRateMonitor(self.network)
        self.meter = EnergyMeter(self.network, constants) if energy else None
        self.records: list[ImageRecord] = []
        self.totals = FiringTotals()
        bound = reference_bound(model.config, self.dtype)
        self.memory = PassMemory(self._forward, self.dtype, self.device, max_memory, bound)

    @property
    def stages(self) -> str:
        if self.all_stages:
            return (
                "all decoder stages embedded (official definition: the official head computes "
                "all of them at inference too)"
            )
        return "last decoder stage only (the s2f inference path)"

    def check_fits(self, height: int, width: int) -> None:
        """Raise ``inference.memory.MemoryLimitError`` when measuring a ``height x width`` image
        would need more memory than ``max_memory`` and the machine allow."""
        net_h, net_w = network_input_size(height, width, self.imgsz)
        self.memory.check(
            f"a {height}x{width} image at {{imgsz}} ({net_h}x{net_w} into the network)",
            (net_h, net_w),
            net_h * net_w,  # the decoded image is held already; its resized copies are not
            imgsz=self.imgsz,
        )

    def measure(self, image: np.ndarray, label: str, input_index: int | None = None) -> ImageRecord:
        """Run one ``HxWx3`` uint8 RGB image; its statistics join the run's totals. An image
        too large for the memory raises ``MemoryLimitError`` before anything is allocated.

        ``input_index``: the position of the image's input in the job (default: a new input
        after the last one), by which ``gather`` orders the records of several processes.
        """
        self.check_fits(*image.shape[:2])
        start = time.perf_counter()
        resized = resize_image(image, self.imgsz)
        self._forward(normalize(resized, self.dtype)[None].to(self.device))
        layers = self.monitor.records()
        energy = self.meter.report() if self.meter is not None else None
        self.totals.add(layers, energy)
        firing = pooled("image", layers)
        record = ImageRecord(
            path=label,
            size=[int(image.shape[0]), int(image.shape[1])],
            network_size=[int(resized.shape[0]), int(resized.shape[1])],
            spikes=firing.spikes,
            outputs=firing.outputs,
            time_ms=1000 * (time.perf_counter() - start),
            input_index=self._input_index(input_index),
        )
        if energy is not None:
            total = energy.total()
            record.energy_mj, record.conventional_mj = total.energy_mj, total.conventional_mj
        self.records.append(record)
        return record

    def _forward(self, batch: torch.Tensor) -> None:
        """One forward of ``batch`` observed by the monitor (and the energy meter), whose
        statistics then hold this forward alone."""
        self.monitor.reset()
        if self.meter is not None:
            self.meter.reset()
        with ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            stack.enter_context(self.monitor)
            if self.meter is not None:
                stack.enter_context(self.meter)
            self.network(batch, return_aux=self.all_stages)

    def fail(self, label: str, message: str, input_index: int | None = None) -> ImageRecord:
        """Record an input that could not be read."""
        record = ImageRecord(
            path=label,
            status="error",
            message=message,
            input_index=self._input_index(input_index),
        )
        self.records.append(record)
        return record

    def _input_index(self, given: int | None) -> int:
        if given is not None:
            return given
        return self.records[-1].input_index + 1 if self.records else 0

    # Processes ---------------------------------------------------------------------------------

    def share(self) -> RunShare:
        """This process's records and totals, to merge with the other processes'."""
        return RunShare(list(self.records), self.totals)

    def gather(self, context: DistributedContext) -> None:
        """Under data parallelism, give rank 0 the whole run: every process's records and totals
        merged in input order (``shares.merge_shares``: equal to one process's run). The other
        processes keep their own share. Every process of the group must call it."""
        merged = gather_share(self.share(), context)
        if merged is not None:
            self.records, self.totals = merged.records, merged.totals

    # Results -----------------------------------------------------------------------------------

    @property
    def measured(self) -> int:
        return sum(r.status == "ok" for r in self.records)

    def layers(self) -> list[LayerFiring]:
        return self.totals.layer_records()

    def energy(self) -> EnergyReport | None:
        if self.meter is None:
            return None
        return self.totals.energy_report(self.meter.constants)

    def settings(self, model: str) -> dict[str, Any]:
        return {
            "model": model,
            "device": str(self.device),
            "precision": self.precision,
            "imgsz": self.imgsz,
            "stages": self.stages,
            "network": "reference network in evaluation mode (BatchNorm not folded, attention "
            "in the official order q.k^T first, all T copies)",
            "images": self.measured,
            "failed": len(self.records) - self.measured,
        }

    def to_dict(self, model: str) -> dict[str, Any]:
        """The JSON document: definitions and settings first, then per-image records, layers,
        parts and total, and the energy section when measured."""
        layers = self.layers()
        document: dict[str, Any] = {
            "tool": "s2f firing-rates",
            "definitions": DEFINITIONS,
            "settings": self.settings(model),
            "images": [r.as_dict() for r in self.records],
            "layers": [layer.as_dict() for layer in layers],
            "parts": [part.as_dict() for part in by_part(layers)],
            "total": pooled("total", layers).as_dict(),
        }
        report = self.energy()
        if report is not None:
            document["energy"] = {
                "definitions": ENERGY_DEFINITIONS,
                "constants_pj": asdict(report.constants),
                "accounting": accounting_table(),
                "per": "image (averaged over the measured images)",
                "parts": [t.as_dict() for t in report.by_part()],
                "total": report.total().as_dict(),
                "modules": [t.as_dict() for t in report.by_module()],
                "operations": report.operation_rows(),
            }
        return document

    def csv_text(self) -> str:
        """One CSV table: ``section`` is layer, part or total (firing), and with energy also
        operation, energy-part and energy-total (per-image values)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        layers = self.layers()
        for section, rows in (
            ("layer", layers),
            ("part", by_part(layers)),
            ("total", [pooled("total", layers)]),
        ):
            for layer in rows:
                writer.writerow({"section": section, **layer.as_dict()})
        report = self.energy()
        if report is not None:
            for row in report.operation_rows():
                writer.writerow({"section": "operation", "name": row["module"], **row})
            for section, totals in (
                ("energy-part", report.by_part()),
                ("energy-total", [report.total()]),
            ):
                for total in totals:
                    writer.writerow({"section": section, "part": total.name, **total.as_dict()})
        return out.getvalue()
