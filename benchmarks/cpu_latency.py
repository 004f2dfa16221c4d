"""CPU forward latency of a preset at a given input size (random weights, evaluation mode).

    python benchmarks/cpu_latency.py --preset sdtv3b-ade20k --size 512 --repeats 5

Prints one JSON line: the median and minimum of ``repeats`` timed forwards after ``warmup``
untimed ones, with the torch version, thread count and processor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from machine import machine

from spike2former import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sdtv3b-ade20k")
    parser.add_argument("--size", type=int, default=512, help="square input side")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0 keeps torch's default")
    parser.add_argument("--semantic", action="store_true", help="time semantic_logits instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = build_model(args.preset).eval()
    images = torch.randn(args.batch, 3, args.size, args.size)
    run = model.semantic_logits if args.semantic else model
    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.repeats):
            start = time.perf_counter()
            run(images)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "preset": args.preset,
                "input": [args.batch, 3, args.size, args.size],
                "median_ms": round(1000 * statistics.median(times), 1),
                "min_ms": round(1000 * min(times), 1),
                "repeats": args.repeats,
                **machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
