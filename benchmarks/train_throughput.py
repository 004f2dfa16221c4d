"""Training throughput and peak memory of a preset on the CPU (random weights, synthetic batch).

    python benchmarks/train_throughput.py --preset sdtv3b-ade20k --size 512 --batch 2 --iters 3
    python benchmarks/train_throughput.py ... --loss-chunk-pixels 0   # the official mask losses

One training step is what ``spike2former.training.loop`` does per iteration: forward in training
mode (all 7 decoder stages), ``MaskFormerLoss`` on the stacked stages, backward, gradient clipping
at 0.01, AdamW over the official groups, schedule step. The labels hold ``--classes`` rectangles
per image (ADE20K crops have about 10 to 20 classes), so every stage matches that many masks.
Prints one JSON line: images/s over the timed steps (after ``--warmup`` untimed ones) and the
process's peak resident memory (``ru_maxrss``), which includes the model, AdamW state and the
largest step. ``--loss-chunk-pixels 0`` upsamples every matched mask of a stage at once and keeps
the result for backward, as the official code does; the default processes them in chunks of
4M label pixels under activation checkpointing. ``--loss-only`` measures the loss alone
(forward and backward on random logits of the preset's shapes, no network), where that difference
shows by itself.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

import torch

from spike2former import build_model
from spike2former.losses import MaskFormerLoss, stack_stages
from spike2former.training import build_optimizer, build_scheduler, recipe_for


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sdtv3b-ade20k")
    parser.add_argument("--size", type=int, default=512, help="square crop side")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=15, help="classes per image")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0 keeps torch's default")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument(
        "--loss-chunk-pixels", type=int, default=2**22, help="0: all masks at once (official)"
    )
    parser.add_argument(
        "--loss-only", action="store_true", help="time the loss on random logits, no network"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = build_model(args.preset).train()
    recipe = recipe_for(args.preset)
    num_classes = model.config.head.num_classes
    criterion = MaskFormerLoss(
        num_classes, cls_cost=recipe.cls_cost, chunk_pixels=args.loss_chunk_pixels or None
    )
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe)
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = synthetic_labels(args.batch, args.size, args.classes, num_classes)
    setup_rss = peak_rss_mib()

    if args.loss_only:
        stages, queries = model.config.head.decoder_layers + 1, model.config.head.num_queries
        half = args.size // 2
        fake_class = torch.randn(stages, args.batch, queries, num_classes + 1, requires_grad=True)
        fake_masks = torch.randn(stages, args.batch, queries, half, half, requires_grad=True)
        del model, optimizer
        setup_rss = peak_rss_mib()
    times = []
    for step in range(args.warmup + args.iters):
        start = time.perf_counter()
        if args.loss_only:
            losses = criterion(fake_class, fake_masks, labels)
            torch.stack(list(losses.values())).sum().backward()
            times.append(time.perf_counter() - start)
            continue
        with torch.autocast("cpu", torch.bfloat16, enabled=args.amp):
            outputs = model(images)
        class_logits, mask_logits = stack_stages(outputs)
        losses = criterion(class_logits.float(), mask_logits.float(), labels)
        loss = torch.stack(list(losses.values())).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad)
        optimizer.step()
        scheduler.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(
        json.dumps(
            {
                "preset": args.preset,
                "measured": "loss only" if args.loss_only else "training step",
                "input": [args.batch, 3, args.size, args.size],
                "classes_per_image": args.classes,
                "loss_chunk_pixels": args.loss_chunk_pixels or "all (official)",
                "amp": args.amp,
                "seconds_per_step": round(median, 2),
                "images_per_s": round(args.batch / median, 3),
                "peak_rss_mib": round(peak_rss_mib()),
                "rss_after_setup_mib": round(setup_rss),
                "steps": args.iters,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "processor": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
