"""Inference speed and peak memory of ``sdtv3b-ade20k`` on the CPU, against two references.

    python benchmarks/segment_speed.py --size 512 --repeats 5 [--threads N]

Each case runs in a fresh process (so peak resident memory is its own), random weights,
evaluation mode, ``torch.inference_mode``:

- ``s2f``: the path ``s2f segment`` uses (``optimize_for_inference`` + semantic scores, and the
  allocator setting of every ``s2f`` command, ``keep_freed_memory``), batch 1 and batch 8; once
  more at batch 1 with glibc's default allocator, as a library user gets it; ``s2f-bf16``: the
  same in bfloat16 (``--precision bf16``);
- ``official-way``: the same network computed as the official code does (all seven stages, every
  BatchNorm separate, (q k^T) v attention, mask features materialised), batch 1;
- ``hf-mask2former``: transformers' ``Mask2FormerForUniversalSegmentation`` with its default
  config and 150 labels (skipped when transformers is not installed), as its users run it and
  with ``keep_freed_memory`` too, for a like-for-like comparison.

Prints one JSON line per case: median seconds per batch, images/s, peak RSS in MiB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def _case(
    name: str, size: int, batch: int, warmup: int, repeats: int, keep_memory: bool
) -> dict[str, object]:
    if keep_memory:
        from spike2former.inference.allocator import keep_freed_memory

        keep_memory = keep_freed_memory()
    images = torch.randn(batch, 3, size, size)
    if name == "hf-mask2former":
        from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

        model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(num_labels=150)).eval()

        def run() -> None:
            model(pixel_values=images)
    else:
        from spike2former import build_model
        from spike2former.modeling.fusion import optimize_for_inference
        from spike2former.modeling.spike2former import combine_masks

        torch.manual_seed(0)
        network = build_model("sdtv3b-ade20k").eval()
        if name.startswith("s2f"):
            network = optimize_for_inference(network)
        if name == "s2f-bf16":
            network, images = network.to(torch.bfloat16), images.to(torch.bfloat16)

        def run() -> None:
            out = network(images, return_aux=name == "official-way")
            combine_masks(out["class_logits"], out["mask_logits"], images.shape[-2:])

    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            run()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "case": name,
        "allocator": "keep_freed_memory" if keep_memory else "default",
        "input": [batch, 3, size, size],
        "seconds_per_batch": round(seconds, 3),
        "images_per_second": round(batch / seconds, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0 keeps torch's default")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--keep-memory", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        case = _case(
            args.case, args.size, args.batch, args.warmup, args.repeats, bool(args.keep_memory)
        )
        print(json.dumps(case))
        return
    cases = [
        ("s2f", 1, 1),
        ("s2f", 8, 1),
        ("s2f", 1, 0),
        ("s2f-bf16", 1, 1),
        ("official-way", 1, 0),
        ("hf-mask2former", 1, 0),
        ("hf-mask2former", 1, 1),
    ]
    for name, batch, keep in cases:
        command = [sys.executable, __file__, "--case", name, "--batch", str(batch)]
        command += ["--keep-memory", str(keep)]
        command += ["--size", str(args.size), "--warmup", str(args.warmup)]
        command += ["--threads", str(args.threads)]
        command += ["--repeats", str(args.repeats if batch == 1 else max(1, args.repeats // 2))]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or ["failed"])[-1]
            print(json.dumps({"case": name, "batch": batch, "skipped": reason}))
        else:
            print(result.stdout.strip())


if __name__ == "__main__":
    main()
