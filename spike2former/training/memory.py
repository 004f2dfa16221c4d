"""How much memory a training run takes, estimated before it starts.

A run holds, besides the network's weights (already loaded when this is asked):

- **the optimiser's share**: gradients and AdamW's two moments, three times the parameters'
  bytes (four under DDP, whose gradient buckets are another copy);
- **one step's activations**: everything a training step (forward in training mode, loss,
  backward) keeps alive at its peak. They grow with the pixels of the batch, so they are
  ``batch x crop pixels x bytes per pixel``, the bytes per pixel *measured* on this network: one
  step on one image of the crop (of a crop of ``PROBE_PIXELS`` with its aspect, when the crop is
  larger), with labels of as many classes as the network matches (at most ``PROBE_CLASSES``),
  counting the storages torch operations create until they are freed (``LiveTensors``). The
  measured step is undone (buffers, gradients and random state restored). Dividing the whole
  peak by the probe's pixels overstates small crops (the step's fixed part is counted as if it
  grew with them);
- **a validation image**, instead of a step's activations while it is scored: the peak of one
  pass at the largest network input, from the curve ``inference.pass_memory.PeakCurve`` fits to
  three small passes (attention is quadratic in the pixels there);
- **the data in flight**: batches loaded ahead by each worker (``PREFETCH_BATCHES``), the batch in
  use, per loading process the decoded image at its largest resize, and the process itself.

Live tensors are what torch counts, not what the process holds: the allocator's fragmentation
and the kernels' workspaces (im2col buffers of small convolutions on a CPU) come on top, and the
first steps allocate once what later steps reuse (``STEP_OVERHEAD``). ``RESIDENT_PER_LIVE`` turns
live bytes per pixel into what the activations really take; it was fitted, rounded up, to runs
of ``benchmarks/train_memory.py``: ``train`` for 2 iterations on synthetic images of 3 classes
(as many as the measured step's labels then hold), measured as the peak the process really took
above what it held when the estimate was made (CPU: resident memory with freed memory kept, as
``s2f train`` keeps it, one thread, torch 2.13.0, 2-core x86-64 VM; CUDA: memory the caching
allocator reserved, torch 2.11.0+cu130, one H200). Live and real bytes per pixel of the
activations, and the whole estimate against the whole measure:

=====================  ======  ====  ======  ========  ===========  ========
case                   device  live  real    estimate  measured     estimate
preset:crop:batch              B/px  B/px    MiB       MiB          /measured
=====================  ======  ====  ======  ========  ===========  ========
small:512:2            cpu     395   879     868       617          1.41
small:1024:2           cpu     395   836     2,970     1,879        1.58
tiny:512:2             cpu     910   2,042   1,291     1,209        1.07
tiny:512:4             cpu     910   2,091   2,404     2,289        1.05
tiny:1024:1            cpu     910   2,106   2,404     2,304        1.04
sdtv3b-ade20k:256:1    cpu     5,591 7,817   1,210     1,092        1.11
sdtv3b-ade20k:512:1    cpu     5,591 9,554   3,032     2,996        1.01
sdtv3b-ade20k:512:2    cpu     5,591 8,869   5,461     5,047        1.08
small:512:8            cuda    395   429     1,077     988          1.09
tiny:512:8             cuda    910   928     2,324     1,996        1.16
tiny:1024:4            cuda    910   1,066   4,508     4,406        1.02
sdtv3b-ade20k:512:1    cuda    5,591 5,579   2,243     1,960        1.14
sdtv3b-ade20k:512:12   cuda    5,591 5,251   20,694    16,318       1.27
sdtv2-ade20k:512:6     cuda    5,768 5,451   10,903    8,698        1.25
=====================  ======  ====  ======  ========  ===========  ========

On a CPU the ratio of real to live bytes falls with the network's size (2.1 to 2.6 for the
small networks, 1.4 to 1.7 for SDT-V3 base), hence a factor and an added constant; repeated CPU
runs gave real bytes per pixel up to 25 % apart (the allocator's fragmentation varies), and the
fit takes the largest seen. The labels' classes matter little up to ``PROBE_CLASSES``: SDT-V3
base at 256x256 keeps 5.3 KB of live tensors per pixel with 3 or 15 classes, 6.5 KB with
50 and 7.2 KB with 100 matched masks.

The measuring step costs about one training step at the probe size, so it runs only when
``COARSE_BYTES_PER_PIXEL`` (far above every measured network) says the run might not fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..inference.memory import (
    IMAGE_BYTES_PER_PIXEL,
    LiveTensors,
    available_bytes,
)
from ..inference.pass_memory import PeakCurve, reference_bound
from ..modeling.spike2former import Spike2Former
from .checkpoint import capture_rng, restore_rng
from .data import PREFETCH_BATCHES
from .evaluate import whole_scores
from .lean import LeanTraining, build_criterion, prepare_model, step_losses

# What activations really take per pixel, from their live tensors' bytes per pixel, per device
# type: (factor, bytes added) fitted to the measurements of the calibration, rounded up.
RESIDENT_PER_LIVE = {"cpu": (1.6, 750.0), "cuda": (1.2, 0.0)}
# Classes in the measured step's labels: as many as the network matches, up to what a crop of
# the official datasets holds (ADE20K's 10 to 20).
PROBE_CLASSES = 16
# What the first steps allocate once besides their tensors (see the calibration).
STEP_OVERHEAD = 128 * 2**20
# Per pixel of a training batch and time step: far above every network measured.
COARSE_BYTES_PER_PIXEL = 32 * 2**10
# The largest probe: a 256x256 crop, where activations already outweigh the step's fixed part.
PROBE_PIXELS = 256 * 256
# A data-loading process's own memory: a forked worker measured 21 MB of private pages and a
# proportional share of 117 MB (with pages shared with the training process).
WORKER_BYTES = 128 * 2**20
# Bytes per pixel of a batch: float32 image (3 x 4) and int64 label (8).
BATCH_BYTES_PER_PIXEL = 20
# Bytes per pixel of a decoded image at its largest resize while it is transformed: RGB and
# label, their resized copies and the photometric distortion's float copy (about 5 + 5 + 12).
DECODE_BYTES_PER_PIXEL = 24
# The share of the free memory a run may plan to use: the rest is left to everything else.
HEADROOM = 0.9


@dataclass(frozen=True)
class Images:
    """The largest sizes a run meets, in pixels: a training ``crop``, a training image at its
    largest resize (``train_image``), a validation image as stored (``val_image``) and as the
    network sees it (``val_input``)."""

    crop: int
    train_image: int
    val_image: int = 0
    val_input: int = 0


@dataclass(frozen=True)
class TrainingMemory:
    """A run's memory in bytes, as a function of its batch size and loading processes:
    ``fixed`` (the optimiser's share and the steps' overhead), ``per_image`` (one crop's
    activations), ``validation`` (scoring the largest validation image); the network runs
    ``on_device`` (an accelerator) or on the host."""

    fixed: float
    per_image: float
    validation: float
    images: Images
    on_device: bool

    def network(self, batch: int) -> float:
        """What the network takes at its peak (on the accelerator when there is one)."""
        return self.fixed + max(batch * self.per_image, self.validation)

    def data(self, batch: int, workers: int) -> float:
        """What data loading holds: the batches in flight (``PREFETCH_BATCHES`` per worker and
        the one in use), the images being transformed, and the loading processes themselves."""
        batch_bytes = batch * self.images.crop * BATCH_BYTES_PER_PIXEL
        in_flight = (workers * PREFETCH_BATCHES + 1) * batch_bytes
        decoding = max(workers, 1) * self.images.train_image * DECODE_BYTES_PER_PIXEL
        return in_flight + decoding + workers * WORKER_BYTES

    def host(self, batch: int, workers: int) -> float:
        """What the host holds: everything on a CPU, the data only beside an accelerator."""
        data = self.data(batch, workers)
        return data if self.on_device else data + self.network(batch)

    def shortfall(self, room: Room, batch: int, workers: int) -> tuple[str, float, float] | None:
        """None if ``batch`` and ``workers`` fit in ``room`` (within ``HEADROOM``); else where
        they do not ("of memory" or "on the accelerator"), the bytes needed and the bytes free."""
        if self.on_device and room.device is not None:
            if self.network(batch) > HEADROOM * room.device:
                return "on the accelerator", self.network(batch), room.device
        if room.host is not None and self.host(batch, workers) > HEADROOM * room.host:
            return "of memory", self.host(batch, workers), room.host
        return None


@dataclass(frozen=True)
class Room:
    """Free bytes on the host (``inference.memory.available_bytes``: available memory, the
    cgroup's limit and the address-space limit; shared by the run's processes on this machine)
    and on the accelerator."""

    host: float | None
    device: float | None

    @classmethod
    def now(cls, device: torch.device, processes: int = 1) -> Room:
        host = available_bytes(torch.device("cpu"))
        on_device = available_bytes(device) if device.type != "cpu" else None
        return cls(None if host is None else host / processes, on_device)


def coarse(model: Spike2Former, images: Images, device: torch.device) -> TrainingMemory:
    """An upper bound of the run's memory, from sizes alone (nothing measured)."""
    time_steps = model.config.backbone.time_steps
    image = IMAGE_BYTES_PER_PIXEL * max(images.val_image, images.val_input)
    dtype = next(model.parameters()).dtype
    validation = reference_bound(model.config, dtype)(images.val_input) + image
    return TrainingMemory(
        fixed=4 * parameter_bytes(model) + 4 * STEP_OVERHEAD,
        per_image=COARSE_BYTES_PER_PIXEL * time_steps * images.crop,
        validation=validation,
        images=images,
        on_device=device.type != "cpu",
    )


def estimate(
    model: Spike2Former,
    crop: tuple[int, int],
    images: Images,
    *,
    cls_cost: float,
    lean: LeanTraining,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    processes: int = 1,
) -> TrainingMemory:
    """The memory of training ``model`` (moved to ``device``; one of ``processes``) on crops of
    ``crop`` = (height, width) with ``images`` as large as given; measures one training step and
    one validation pass (see the module docstring)."""
    model.to(device)
    per_pixel = activation_bytes_per_pixel(
        model, crop, cls_cost=cls_cost, lean=lean, device=device, autocast_dtype=autocast_dtype
    )
    validation = 0.0
    if images.val_input:
        dtype = next(model.parameters()).dtype
        with step_undone(model):
            model.eval()
            peak = PeakCurve.measure(lambda batch: whole_scores(model, batch), dtype, device)
        live = peak(images.val_input) / images.val_input
        image = IMAGE_BYTES_PER_PIXEL * max(images.val_image, images.val_input)
        validation = resident_per_pixel(live, device) * images.val_input + image
    copies = 4 if processes > 1 else 3
    return TrainingMemory(
        fixed=copies * parameter_bytes(model) + STEP_OVERHEAD,
        per_image=resident_per_pixel(per_pixel, device) * images.crop,
        validation=validation,
        images=images,
        on_device=device.type != "cpu",
    )


def resident_per_pixel(live_per_pixel: float, device: torch.device) -> float:
    """Bytes per pixel a process really takes for ``live_per_pixel`` bytes of live tensors."""
    factor, added = RESIDENT_PER_LIVE.get(device.type, RESIDENT_PER_LIVE["cpu"])
    return factor * live_per_pixel + added


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def probe_size(crop: tuple[int, int]) -> tuple[int, int]:
    """The crop itself, or one of ``PROBE_PIXELS`` with its aspect (sides multiples of 32)."""
    height, width = crop
    if height * width <= PROBE_PIXELS:
        return crop
    scale = math.sqrt(PROBE_PIXELS / (height * width))
    return max(32, round(height * scale / 32) * 32), max(32, round(width * scale / 32) * 32)


def activation_bytes_per_pixel(
    model: Spike2Former,
    crop: tuple[int, int],
    *,
    cls_cost: float,
    lean: LeanTraining,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """Peak bytes of live tensors per input pixel of one training step on one image of
    ``probe_size(crop)`` (on ``model``'s device). The network is left as it was (weights,
    buffers, gradients, mode and random state)."""
    height, width = probe_size(crop)
    head = model.config.head
    classes = min(head.num_classes, head.num_queries, PROBE_CLASSES)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(1, 3, height, width, generator=generator).to(device)
    # horizontal bands of ``classes`` classes: every one of them is matched
    rows = torch.arange(height) * classes // height
    labels = rows[:, None].expand(height, width)[None].contiguous().to(device)
    criterion = build_criterion(model, cls_cost, lean).to(device)
    with step_undone(model):
        prepare_model(model, lean).train()
        with LiveTensors() as live:
            losses = step_losses(
                model, criterion, images, labels, lean, autocast_dtype=autocast_dtype
            )
            torch.stack(list(losses.values())).sum().backward()
            del losses
    return live.peak / (height * width)


@contextmanager
def step_undone(model: torch.nn.Module) -> Iterator[None]:
    """Run a step and take it back: buffers (BatchNorm statistics), gradients, training mode,
    and the random generators are restored afterwards."""
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    grads = {name: p.grad for name, p in model.named_parameters()}
    mode = model.training
    rng = capture_rng()
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
        for name, parameter in model.named_parameters():
            parameter.grad = grads[name]
        model.train(mode)
        restore_rng(rng)
