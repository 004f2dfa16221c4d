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


def lean_settings(args: argparse.Namespace) -> LeanTraining:
    if args.case == "official":
        return OFFICIAL
    return LeanTraining(
        compact_spikes=args.compact_spikes,
        reassociate=args.reassociate,
        loss_chunk_pixels=args.loss_chunk_pixels or None,
        cost_chunk_pixels=args.cost_chunk_pixels or None,
        recompute_backbone=args.recompute_backbone,
    )


def run_case(args: argparse.Namespace) -> dict[str, object]:
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = (
        "keep_freed_memory" if args.allocator == "keep" and keep_freed_memory() else "default"
    )
    lean = lean_settings(args)
    torch.manual_seed(0)
    model = prepare_model(build_model(args.preset).train(), lean)
    recipe = recipe_for(args.preset)
    criterion = build_criterion(model, recipe.cls_cost, lean)
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe)
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = synthetic_labels(args.batch, args.size, args.classes, model.config.head.num_classes)
    setup_rss = peak_rss_mib()
    neurons = official_neurons() if args.case == "official" else nullcontext()
    amp = torch.bfloat16 if args.amp else None

    times = []
    with neurons:
        for step in range(args.warmup + args.iters):
            start = time.perf_counter()
            losses = step_losses(model, criterion, images, labels, lean, autocast_dtype=amp)
            loss = torch.stack(list(losses.values())).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loss = loss.detach()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad)
            optimizer.step()
            scheduler.step()
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "case": args.case,
        "preset": args.preset,
        "input": [args.batch, 3, args.size, args.size],
        "classes_per_image": args.classes,
        "lean": {
            "compact_spikes": lean.compact_spikes,
            "reassociate": lean.reassociate,
            "loss_chunk_pixels": lean.loss_chunk_pixels,
            "cost_chunk_pixels": lean.cost_chunk_pixels,
            "recompute_backbone": lean.recompute_backbone,
        },
        "amp": args.amp,
        "seconds_per_step": round(median, 2),
        "images_per_s": round(args.batch / median, 3),
        "peak_rss_mib": round(peak_rss_mib()),
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
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0 keeps torch's default")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--allocator", choices=["keep", "default"], default="keep")
    parser.add_argument(
        "--no-compact-spikes", dest="compact_spikes", action="store_false", help="s2f: float spikes"
    )
    parser.add_argument(
        "--no-reassociate", dest="reassociate", action="store_false", help="s2f: official order"
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
    if not args.compare_official:
        print(json.dumps(run_case(args)), flush=True)
        return
    forwarded = [arg for arg in sys.argv[1:] if arg != "--compare-official"]
    for case in ("s2f", "official"):
        command = [sys.executable, __file__, *forwarded, "--case", case]
        if subprocess.run(command).returncode != 0:
            sys.exit(f"error: the {case} case failed")


if __name__ == "__main__":
    main()
