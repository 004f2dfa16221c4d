"""How often the fused inference network and the reference network disagree in float32.

    python benchmarks/fusion_agreement.py --model MODEL --images PATH... [--imgsz 512] [--compiled]

For every image, the official-way network (reference, float32), the fused network (float32) and
the reference in float64 segment the image; the script prints the fraction of pixels on which the
fused and the float64 maps agree with the float32 reference, per image and overall. The network is
chaotic (one spike flipped near a rounding boundary can change many pixels), so this is the
number to look at when judging the fused path, not a max-abs error. ``--compiled`` adds the fused
network through ``torch.compile`` (``s2f segment --compile``), also compared with the fused one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from spike2former import load_model
from spike2former.inference.predictor import Predictor
from spike2former.inference.sources import expand_sources, read_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--compiled", action="store_true", help="also the compiled network")
    args = parser.parse_args()

    model = load_model(args.model)
    predictors = {
        "reference": Predictor(model, "cpu", "fp32", args.imgsz, optimize=False),
        "fused": Predictor(model, "cpu", "fp32", args.imgsz, optimize=True),
        "reference_fp64": Predictor(model, "cpu", "fp64", args.imgsz, optimize=False),
    }
    totals = {"fused": 0, "reference_fp64": 0}
    if args.compiled:
        predictors["compiled"] = Predictor(model, "cpu", "fp32", args.imgsz, compile=True)
        totals["compiled"] = totals["compiled_vs_fused"] = 0
    pixels = 0
    for source in expand_sources(args.images):
        if source.kind != "image" or source.path is None:
            continue
        image = read_image(source.path)
        labels = {k: torch.from_numpy(p.predict([image])[0].labels) for k, p in predictors.items()}
        row: dict[str, object] = {"image": str(source.path)}
        for name in totals:
            mine, theirs = name.split("_vs_") if "_vs_" in name else (name, "reference")
            same = int((labels[mine] == labels[theirs]).sum())
            totals[name] += same
            row[f"{name}_agreement"] = round(same / labels["reference"].numel(), 6)
        pixels += labels["reference"].numel()
        print(json.dumps(row))
    summary = {f"{k}_agreement": round(v / max(pixels, 1), 6) for k, v in totals.items()}
    print(json.dumps({"overall": summary, "pixels": pixels}))


if __name__ == "__main__":
    main()
