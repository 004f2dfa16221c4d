"""Training cost of a preset: time per step and peak memory, s2f against the official way.

    python benchmarks/train_throughput.py --compare-official            # both, one JSON line each
    python benchmarks/train_throughput.py --case s2f --no-compact-spikes  # one technique off
    python benchmarks/train_throughput.py --case s2f --recompute-backbone  # checkpointing on

Each case runs in a fresh process of its own (so that its peak resident memory is its own) on a
model with random weights and a synthetic batch; one training step is what
``spike2former.training.loop`` does per iteration: forward in training mode (all 7 decoder
stages), ``MaskFormerLoss``, backward, gradient clipping at the recipe's norm, AdamW over the
official parameter groups, schedule step.

- ``s2f``: the lean step (``spike2former.training.lean.LeanTraining``; each saving can be
  switched off for the table of what it contributes).
- ``official``: the same network computed and kept as the official code does it: neurons save
  their float inputs (``official_training.official_neurons``), every stage's maps from the full
  stride-2 projection, ``(q k^T) v`` attention, every matched mask of a stage upsampled to label
  size at once and kept for backward; no checkpointing, no compilation.

The labels hold ``--classes`` rectangles per image (ADE20K crops have about 10 to 20 classes),
so every stage matches that many masks. Both cases use the allocator setting ``s2f train`` runs
with (glibc keeps freed memory for reuse); ``--allocator default`` leaves glibc's defaults.
Prints one JSON line per case: ``case``, ``seconds_per_step`` (median over ``--iters`` timed steps
after ``--warmup``), ``images_per_s``, ``peak_rss_mib`` (``ru_maxrss``: weights, AdamW state and
the largest step), and the settings.

``--device cuda`` runs the step on a GPU (each timed step ends with a synchronisation) and adds
``peak_device_mib`` (``torch.cuda.max_memory_allocated``: what the tensors needed) and
``peak_reserved_mib`` (what the caching allocator held). ``--largest-batch`` then finds the
largest batch that fits the device: one step per batch size, each in its own process, doubling
until a step runs out of memory and halving the gap after that; one JSON line per size tried
(``fits`` true or false), then one with ``largest_batch``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from official_training import official_neurons  # noqa: E402

from spike2former import build_model  # noqa: E402
from spike2former.inference.allocator import keep_freed_memory  # noqa: E402
from spike2former.mask_loss import DEFAULT_CHUNK_PIXELS  # noqa: E402
from spike2former.matching import DEFAULT_COST_CHUNK_PIXELS  # noqa: E402
from spike2former.training import build_optimizer, build_scheduler, recipe_for  # noqa: E402
from spike2former.training.lean import (  # noqa: E402
    OFFICIAL,
    LeanTraining,
    build_criterion,
    prepare_model,
    step_losses,
)


def synthetic_labels(batch: int, size: int, classes: int, num_classes: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    labels = torch.full((batch, size, size), 255, dtype=torch.long)
    for image in range(batch):
        ids = torch.randperm(num_classes, generator=generator)[:classes]
        for cls in ids.tolist():
            top, left = torch.randint(0, size // 2, (2,), generator=generator).tolist()
            height, width = torch.randint(size // 8, size // 2, (2,), generator=generator).tolist()
            labels[image, top : top + height, left : left + width] = cls
    return labels


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lean_settings(args: argparse.Namespace) -> LeanTraining:
    if args.case == "official":
        return OFFICIAL
    return LeanTraining(
        compact_spikes=args.compact_spikes,
        reassociate=args.reassociate,
        loss_chunk_pixels=args.loss_chunk_pixels or None,
        cost_chunk_pixels=args.cost_chunk_pixels or None,
        blocked_depthwise_grad=args.blocked_depthwise_grad,
        recompute_backbone=args.recompute_backbone,
    )


def run_case(args: argparse.Namespace) -> dict[str, object]:
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = (
        "keep_freed_memory" if args.allocator == "keep" and keep_freed_memory() else "default"
    )
    lean = lean_settings(args)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = prepare_model(build_model(args.preset).train(), lean).to(device)
    recipe = recipe_for(args.preset)
    criterion = build_criterion(model, recipe.cls_cost, lean)
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe)
    images = torch.randn(args.batch, 3, args.size, args.size).to(device)
    num_classes = model.config.head.num_classes
    labels = synthetic_labels(args.batch, args.size, args.classes, num_classes).to(device)
    setup_rss = peak_rss_mib()
    neurons = official_neurons() if args.case == "official" else nullcontext()
    amp = torch.bfloat16 if args.amp else None

    times = []
    with neurons:
        for step in range(args.warmup + args.iters):
            synchronize(device)
            start = time.perf_counter()
            losses = step_losses(model, criterion, images, labels, lean, autocast_dtype=amp)
            loss = torch.stack(list(losses.values())).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loss = loss.detach()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad)
            optimizer.step()
            scheduler.step()
            synchronize(device)
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
    median = statistics.median(times)
    on_device = {}
    if device.type == "cuda":
        on_device = {
            "peak_device_mib": round(torch.cuda.max_memory_allocated(device) / 2**20),
            "peak_reserved_mib": round(torch.cuda.max_memory_reserved(device) / 2**20),
            "device_name": torch.cuda.get_device_name(device),
        }
    return {
        "case": args.case,
        "device": str(device),
        "preset": args.preset,
        "input": [args.batch, 3, args.size, args.size],
        "classes_per_image": args.classes,
        "lean": {
            "compact_spikes": lean.compact_spikes,
            "reassociate": lean.reassociate,
            "loss_chunk_pixels": lean.loss_chunk_pixels,
            "cost_chunk_pixels": lean.cost_chunk_pixels,
            "blocked_depthwise_grad": lean.blocked_depthwise_grad,
            "recompute_backbone": lean.recompute_backbone,
        },
        "amp": args.amp,
        "seconds_per_step": round(median, 2),
        "images_per_s": round(args.batch / median, 3),
        "peak_rss_mib": round(peak_rss_mib()),
        **on_device,
        "rss_after_setup_mib": round(setup_rss),
        "loss": round(loss.item(), 4),
        "steps": args.iters,
        "threads": torch.get_num_threads(),
        "allocator": allocator,
        "torch": torch.__version__,
        "processor": platform.processor() or platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["s2f", "official"], default="s2f")
    parser.add_argument(
        "--compare-official",
        action="store_true",
        help="run s2f, then official, each in its own process",
    )
    parser.add_argument("--preset", default="sdtv3b-ade20k")
    parser.add_argument("--size", type=int, default=512, help="square crop side")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=15, help="classes per image")
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed steps first: the first few fault in fresh pages while the heap settles",
    )
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0 keeps torch's default")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--largest-batch",
        action="store_true",
        help="CUDA: find the largest batch whose step fits the device (one process per size)",
    )
    parser.add_argument("--allocator", choices=["keep", "default"], default="keep")
    parser.add_argument(
        "--no-compact-spikes", dest="compact_spikes", action="store_false", help="s2f: float spikes"
    )
    parser.add_argument(
        "--no-reassociate", dest="reassociate", action="store_false", help="s2f: official order"
    )
    parser.add_argument(
        "--no-blocked-depthwise-grad",
        dest="blocked_depthwise_grad",
        action="store_false",
        help="s2f: oneDNN's weight gradient for the depthwise 5x5 and 7x7 convolutions",
    )
    parser.add_argument(
        "--recompute-backbone",
        action="store_true",
        help="s2f: activation checkpointing of the backbone's blocks",
    )
    parser.add_argument(
        "--loss-chunk-pixels",
        type=int,
        default=DEFAULT_CHUNK_PIXELS,
        help="s2f: 0 computes the mask losses at once, as the official code",
    )
    parser.add_argument(
        "--cost-chunk-pixels",
        type=int,
        default=DEFAULT_COST_CHUNK_PIXELS,
        help="s2f: 0 computes the matching costs at once, as the official code",
    )
    args = parser.parse_args()
    if args.largest_batch:
        if not args.device.startswith("cuda"):
            parser.error("--largest-batch needs --device cuda (on a CPU the kernel kills the step)")
        largest_batch(args)
        return
    if not args.compare_official:
        try:
            print(json.dumps(run_case(args)), flush=True)
        except torch.cuda.OutOfMemoryError:
            sys.exit(OUT_OF_MEMORY)
        return
    forwarded = [arg for arg in sys.argv[1:] if arg != "--compare-official"]
    for case in ("s2f", "official"):
        command = [sys.executable, __file__, *forwarded, "--case", case]
        if subprocess.run(command).returncode != 0:
            sys.exit(f"error: the {case} case failed")


OUT_OF_MEMORY = 3  # exit status of a case whose step ran out of device memory


def search_largest(start: int, fits: Callable[[int], bool]) -> int:
    """The largest batch that ``fits``: doubling from ``start`` until one does not, then
    halving the gap (0 when not even ``start`` fits)."""
    good, bad = 0, start
    while fits(bad):
        good, bad = bad, 2 * bad
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits(middle) else (good, middle)
    return good


def largest_batch(args: argparse.Namespace) -> None:
    """``search_largest`` with one step per batch size, each in its own process."""
    skip = {"--largest-batch", "--compare-official"}
    forwarded = [arg for arg in sys.argv[1:] if arg not in skip]

    def fits(batch: int) -> bool:
        command = [sys.executable, __file__, *forwarded, "--batch", str(batch)]
        command += ["--warmup", "0", "--iters", "1"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode not in (0, OUT_OF_MEMORY):
            sys.exit(f"error: batch {batch} failed: {done.stderr.strip().splitlines()[-1:]}")
        fitted = done.returncode == 0
        record = json.loads(done.stdout) if fitted else {"case": args.case, "batch": batch}
        print(json.dumps({**record, "fits": fitted}), flush=True)
        return fitted

    largest = search_largest(args.batch, fits)
    print(json.dumps({"case": args.case, "preset": args.preset, "largest_batch": largest}))


if __name__ == "__main__":
    main()
