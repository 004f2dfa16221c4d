"""Inference speed and peak memory of ``sdtv3b-ade20k`` on the CPU, against two references.

    python benchmarks/segment_speed.py --size 512 --repeats 5 [--threads N] [--only CASE ...]

Each case runs in a fresh process (so peak resident memory is its own), random weights,
evaluation mode, ``torch.inference_mode``. ``labels`` cases time a normalised image batch to its
label maps, each network with its own post-processing; ``forward`` cases time the network alone.

- ``s2f``: the path ``s2f segment`` takes (``optimize_for_inference``, ``combine_masks`` at the
  input size, arg-max over classes, and the allocator setting of every ``s2f`` command,
  ``keep_freed_memory``), batch 1 and batch 8; once more at batch 1 with glibc's default allocator,
  as a library user gets it; ``s2f-compiled``: the same through ``torch.compile``
  (``s2f segment --compile``; the first call, which compiles, is reported apart);
  ``s2f-bf16``: the same in bfloat16 (``--precision bf16``; skipped on CPUs without native
  bfloat16 arithmetic, where it is many times slower than fp32);
- ``official-way``: the same network computed as the official code does (all seven stages, every
  BatchNorm separate, (q k^T) v attention, mask features materialised, channel-first einsum of
  classes and masks, arg-max), batch 1;
- ``hf-mask2former``: transformers' ``Mask2FormerForUniversalSegmentation`` with its default
  config and 150 labels, and its image processor's ``post_process_semantic_segmentation`` for the
  label map (skipped when transformers is not installed), with the default allocator and with
  ``keep_freed_memory`` for a like-for-like comparison.

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
from collections.abc import Callable

import torch
import torch.nn.functional as F

CASES = [  # name, what is timed, batch, keep_freed_memory
    ("s2f", "labels", 1, True),
    ("s2f", "forward", 1, True),
    ("s2f", "labels", 8, True),
    ("s2f", "labels", 1, False),
    ("s2f-compiled", "labels", 1, True),
    ("s2f-bf16", "labels", 1, True),
    ("official-way", "labels", 1, False),
    ("official-way", "forward", 1, False),
    ("hf-mask2former", "labels", 1, False),
    ("hf-mask2former", "forward", 1, False),
    ("hf-mask2former", "labels", 1, True),
]


def _mask2former(images: torch.Tensor, labels: bool) -> Callable[[], object]:
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessorPil,
    )

    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(num_labels=150)).eval()
    processor = Mask2FormerImageProcessorPil()
    sizes = [tuple(images.shape[-2:])] * len(images)

    def run() -> object:
        out = model(pixel_values=images)
        return processor.post_process_semantic_segmentation(out, sizes) if labels else out

    return run


def _spike2former(name: str, images: torch.Tensor, labels: bool) -> Callable[[], object]:
    from spike2former import build_model
    from spike2former.inference.compiled import CompiledScores, SemanticScores
    from spike2former.modeling.fusion import optimize_for_inference

    torch.manual_seed(0)
    network = build_model("sdtv3b-ade20k").eval()
    if name == "official-way":
        return _official_way(network, images, labels)
    network = optimize_for_inference(network)
    if name == "s2f-bf16":
        network, images = network.to(torch.bfloat16), images.to(torch.bfloat16)
    scores = SemanticScores(network)  # what Predictor runs
    if name == "s2f-compiled":
        scores = CompiledScores(scores)
    return (lambda: scores(images).argmax(1)) if labels else (lambda: network(images))


def _official_way(
    network: torch.nn.Module, images: torch.Tensor, labels: bool
) -> Callable[[], object]:
    size = tuple(images.shape[-2:])

    def run() -> object:
        out = network(images, return_aux=True)
        if not labels:
            return out
        masks = F.interpolate(out["mask_logits"], size=size, mode="bilinear", align_corners=False)
        masks = masks.sigmoid()
        probs = F.softmax(out["class_logits"], dim=-1)[..., :-1]
        return torch.einsum("bqc,bqhw->bchw", probs, masks).argmax(1)

    return run


def _case(
    name: str, timed: str, size: int, batch: int, warmup: int, repeats: int, keep_memory: bool
) -> dict[str, object]:
    if name == "s2f-bf16":
        from spike2former.inference.devices import cpu_has_native_bf16

        if not cpu_has_native_bf16():
            raise SystemExit("this CPU has no native bfloat16 arithmetic (AVX-512 BF16 or AMX)")
    if keep_memory:
        from spike2former.inference.allocator import keep_freed_memory

        keep_memory = keep_freed_memory()
    images = torch.randn(batch, 3, size, size)
    labels = timed == "labels"
    if name == "hf-mask2former":
        run = _mask2former(images, labels)
    else:
        run = _spike2former(name, images, labels)
    times = []
    with torch.inference_mode():
        for _ in range(warmup + repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times[warmup:])
    extra = {"first_call_seconds": round(times[0], 1)} if name == "s2f-compiled" else {}
    return {
        "case": name,
        "timed": timed,
        "allocator": "keep_freed_memory" if keep_memory else "default",
        "input": [batch, 3, size, size],
        "seconds_per_batch": round(seconds, 3),
        "images_per_second": round(batch / seconds, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0 keeps torch's default")
    parser.add_argument("--only", nargs="+", help="run only these case names")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--timed", default="labels", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--keep-memory", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        case = _case(
            args.case,
            args.timed,
            args.size,
            args.batch,
            args.warmup,
            args.repeats,
            bool(args.keep_memory),
        )
        print(json.dumps(case))
        return
    for name, timed, batch, keep in CASES:
        if args.only and name not in args.only:
            continue
        command = [sys.executable, __file__, "--case", name, "--timed", timed]
        command += ["--batch", str(batch), "--keep-memory", str(int(keep))]
        command += ["--size", str(args.size), "--warmup", str(args.warmup)]
        command += ["--threads", str(args.threads)]
        command += ["--repeats", str(args.repeats if batch == 1 else max(1, args.repeats // 2))]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or ["failed"])[-1]
            print(json.dumps({"case": name, "timed": timed, "batch": batch, "skipped": reason}))
        else:
            print(result.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
