"""Wall time of ``s2f segment`` over a folder: one process against several under torchrun.

    python benchmarks/sharded_segment.py [--images 48] [--size 256] [--processes 2]
        [--model s2f-tiny-fashion] [--imgsz 256]

The folder holds crops of the example scenes resized to ``--size`` (written once into a
temporary folder). Cases, each timed end to end as a user runs it (start-up, model loading,
decoding, writing label maps and overlays, merging the summary):

- ``1 process``: ``s2f segment DIR -o OUT`` with torch's default threads (all CPUs);
- ``1 process, 1 thread``: the same with ``--threads 1`` (what each of the sharded processes has
  on a machine with as many CPUs as processes);
- ``torchrun N``: ``torchrun --nproc-per-node N -m s2f_cli segment DIR -o OUT``: each process takes
  every N-th input with an equal part of the CPUs.

Prints one JSON line per case with seconds and images per second, then how many label maps of
each pair of cases differ (a different thread count may round some sums
differently, and a spike count at a rounding boundary can change a label).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def write_inputs(folder: Path, images: int, size: int) -> None:
    scenes = [cv2.imread(str(p)) for p in sorted(EXAMPLES.glob("scene_*.jpg"))]
    for i in range(images):
        scene = scenes[i % len(scenes)]
        height, width = scene.shape[:2]
        shift = (i // len(scenes)) % 8 * 4
        crop = scene[shift : height - shift, shift : width - shift]
        cv2.imwrite(str(folder / f"img{i:04d}.jpg"), cv2.resize(crop, (size, size)))


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def label_maps(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--model", default="s2f-tiny-fashion")
    parser.add_argument("--imgsz", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        write_inputs(root / "in", args.images, args.size)
        segment = ["segment", str(root / "in"), "-m", args.model, "--imgsz", str(args.imgsz), "-q"]
        cases = {
            "1 process": [sys.executable, "-m", "s2f_cli", *segment],
            "1 process, 1 thread": [sys.executable, "-m", "s2f_cli", *segment, "--threads", "1"],
            f"torchrun {args.processes}": [
                sys.executable, "-m", "torch.distributed.run",
                "--standalone", "--nproc-per-node", str(args.processes),
                "-m", "s2f_cli", *segment,
            ],
        }  # fmt: skip
        outputs = {}
        for name, command in cases.items():
            out = root / name.replace(" ", "_").replace(",", "")
            seconds = timed([*command, "-o", str(out)])
            outputs[name] = label_maps(out)
            print(
                json.dumps(
                    {
                        "case": name,
                        "images": args.images,
                        "seconds": round(seconds, 2),
                        "images_per_s": round(args.images / seconds, 2),
                    }
                ),
                flush=True,
            )
        names = list(outputs)
        for i, name in enumerate(names):
            for other in names[:i]:
                differing = sum(outputs[name][k] != v for k, v in outputs[other].items())
                print(json.dumps({"cases": [other, name], "label maps differing": differing}))


if __name__ == "__main__":
    main()
