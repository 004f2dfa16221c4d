"""The training memory estimate against what a run really takes.

    python benchmarks/train_memory.py small:256:1 small:512:2 tiny:512:2 sdtv3b-ade20k:512:1
    python benchmarks/train_memory.py --device cuda sdtv3b-ade20k:512:8

Each case ``PRESET:CROP:BATCH`` (``small``: the test suite's small network) runs in a fresh
process: the estimate of ``spike2former.training.memory`` is made (it measures one step), then
``train`` runs 2 iterations of batches of CROP x CROP crops on synthetic 64x64 images, resized by
the ``shortest_edge_a`` pipeline (up to 1280 pixels, so that crops of any size up to that come
from the data), without data-loading processes or validation. On a CPU (one thread, freed
memory kept as ``s2f train`` keeps it) the measure is the process's peak resident memory
(``ru_maxrss``) above its resident memory when the estimate was made, against the estimate's
host memory; on CUDA, the peak memory the caching allocator reserved above what it held then,
against the estimate's accelerator memory. One JSON line per case: both, their ratio, the bytes
per pixel of the measured step's live tensors (``live_per_pixel``) and what the activations
really took per pixel (``resident_per_pixel``: the measure less the estimate's other parts), the
pairs ``RESIDENT_PER_LIVE`` is fitted to.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)[1]) * 1024  # type: ignore[index]


def run_case(case: str, device_name: str) -> dict[str, object]:
    sys.path.insert(0, str(REPO))
    import torch

    from spike2former import build_model
    from spike2former.inference.allocator import keep_freed_memory
    from spike2former.presets import get_preset
    from spike2former.training import DataSpec, TrainJob, fit_model_to_data, recipe_for, train
    from spike2former.training.distributed import DistributedContext
    from spike2former.training.lean import LeanTraining
    from spike2former.training.memory import RESIDENT_PER_LIVE, Images, estimate
    from tests.helpers import small_config
    from tests.training.helpers import write_shapes_dataset

    keep_freed_memory()
    torch.set_num_threads(1)
    device = torch.device(device_name)
    preset, crop, batch = case.split(":")
    size, batch_size = int(crop), int(batch)
    work = Path(tempfile.mkdtemp())
    root = write_shapes_dataset(work / "data", train=batch_size, size=64)
    data = DataSpec.of("folder", root, val_split=None)
    config = small_config(head={"num_classes": 3}) if preset == "small" else get_preset(preset)
    model, _ = fit_model_to_data(build_model(config).train(), data, num_classes=3)
    model.to(device)
    recipe = recipe_for("tiny").replace(
        iters=2, poly_end=2, warmup_iters=0, batch_size=batch_size, crop_size=(size, size),
        pipeline="shortest_edge_a", checkpoint_interval=1000,
    )  # fmt: skip
    before = rss_bytes() if device.type == "cpu" else torch.cuda.memory_reserved(device)
    need = estimate(
        model, (size, size), Images(crop=size * size, train_image=1280 * 1280),
        cls_cost=recipe.cls_cost, lean=LeanTraining(), device=device,
    )  # fmt: skip
    train(model, TrainJob(recipe, data), work / "run", DistributedContext(device=device))
    if device.type == "cpu":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        estimated = need.host(batch_size, 0)
    else:
        peak = torch.cuda.max_memory_reserved(device)
        estimated = need.network(batch_size)
    factor, added = RESIDENT_PER_LIVE[device.type]
    pixels = size * size
    live = (need.per_image / pixels - added) / factor  # live tensors per pixel
    beside = estimated - batch_size * need.per_image  # the optimiser's share, overhead, data
    return {
        "case": case,
        "device": device.type,
        "estimate_mib": round(estimated / 2**20),
        "measured_mib": round((peak - before) / 2**20),
        "estimate_over_measured": round(estimated / (peak - before), 2),
        "live_per_pixel": round(live),
        "resident_per_pixel": round((peak - before - beside) / (batch_size * pixels)),
    }


def main() -> None:
    args = sys.argv[1:]
    device = "cpu"
    if args[:1] == ["--device"]:
        device, args = args[1], args[2:]
    if args[:1] == ["--case"]:
        print(json.dumps(run_case(args[1], device)), flush=True)
        return
    for case in args:
        done = subprocess.run(
            [sys.executable, __file__, "--device", device, "--case", case],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        print(done.stdout.strip() or done.stderr.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
