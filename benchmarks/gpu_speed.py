"""Inference throughput and peak GPU memory of ``sdtv3b-ade20k`` at 512x512 on one CUDA GPU.

    python benchmarks/gpu_speed.py [--preset sdtv3b-ade20k] [--size 512] [--repeats 20]

The path ``s2f segment --device cuda`` takes (``optimize_for_inference``, semantic scores at the
input size, arg-max), random weights, for fp32 and bf16 at batch 1 and 16. Prints one JSON line
per case: images/s (median over the repeats, synchronised), milliseconds per batch and the peak
memory ``torch.cuda.max_memory_allocated`` reports for that case.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from spike2former import build_model
from spike2former.modeling.fusion import optimize_for_inference
from spike2former.modeling.spike2former import combine_masks

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def measure(
    network: torch.nn.Module, batch: int, size: int, dtype: torch.dtype, repeats: int
) -> dict[str, object]:
    images = torch.randn(batch, 3, size, size, device="cuda", dtype=dtype)
    model = network.to(dtype)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            torch.cuda.synchronize()
            start = time.perf_counter()
            out = model(images)
            combine_masks(out["class_logits"], out["mask_logits"], (size, size)).argmax(1)
            torch.cuda.synchronize()
            if i >= 3:  # cuDNN autotuning and allocator warm-up first
                times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "batch": batch,
        "ms_per_batch": round(1000 * seconds, 2),
        "images_per_second": round(batch / seconds, 2),
        "peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sdtv3b-ade20k")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    network = optimize_for_inference(build_model(args.preset).eval()).cuda()
    device = torch.cuda.get_device_name()
    for precision, dtype in DTYPES.items():
        for batch in (1, 16):
            result = measure(network, batch, args.size, dtype, args.repeats)
            record = {"preset": args.preset, "device": device, "precision": precision}
            print(json.dumps({**record, **result}), flush=True)


if __name__ == "__main__":
    main()
