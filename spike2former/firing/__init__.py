"""Firing rates, energy estimates and spike-train execution of Spike2Former networks.

- ``FiringRateMonitor``: per-layer spike statistics of every neuron while a model runs.
- ``EnergyMeter``: synaptic operations and energy per operation, part and image, next to the
  energy of the same network run conventionally; ``ACCOUNTING`` holds every counting decision.
- ``spike_train_mode``: run a model on real binary spike trains (D virtual time steps).
- ``run.FiringRun``: all of it over a set of images (``s2f firing-rates``; imported from its
  module, as it brings in the image preprocessing); ``totals`` and ``shares``: its exact sums, and
  one run split over processes and merged back.
"""

from .energy import ACCOUNTING, EnergyConstants, EnergyMeter, EnergyReport
from .monitor import FiringRateMonitor, LayerFiring
from .parts import PARTS, network_part
from .spike_train import BinarySpikeCounts, SpikeTrain, spike_train_mode

__all__ = [
    "ACCOUNTING",
    "PARTS",
    "BinarySpikeCounts",
    "EnergyConstants",
    "EnergyMeter",
    "EnergyReport",
    "FiringRateMonitor",
    "LayerFiring",
    "SpikeTrain",
    "network_part",
    "spike_train_mode",
]
