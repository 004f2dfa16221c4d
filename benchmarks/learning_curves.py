"""Learning curves of ``s2f train`` or ``s2f pretrain`` runs: the validation score and the
training loss against iterations.

    python benchmarks/learning_curves.py RUN [RUN ...] --labels spiking conventional \
        --plot docs/learning_curves.png

Reads each run's ``metrics.jsonl``, prints a Markdown table of the validation score per
evaluation (one column per run: mIoU for segmentation runs, top-1 for pretraining runs; the runs
of one table are of one kind) and draws both curves as a PNG with Pillow (a dependency already):
left, the validation score; right, training loss averaged over each logging interval, on a log
scale.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLOURS = [(214, 39, 40), (31, 119, 180), (44, 160, 44), (148, 103, 189)]
_INK, _GRID, _MUTED = (33, 33, 33), (225, 225, 225), (110, 110, 110)
_PANEL_W, _PANEL_H, _MARGIN = 420, 260, 56


# The validation score of each kind of run, by its ``metrics.jsonl`` key, and its axis title.
SCORES = {"mIoU": "validation mIoU (%)", "top1": "validation top-1 (%)"}


def read_metrics(run: Path) -> tuple[str, list[tuple[int, float]], list[tuple[int, float]]]:
    """The run's score key (``mIoU`` or ``top1``), its (iteration, score) and its (iteration,
    train loss) pairs."""
    key, val, loss = "mIoU", [], []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "val":
            key = next(name for name in SCORES if name in record)
            if record[key] is not None:
                val.append((record["iter"], record[key]))
        elif record["event"] == "train":
            loss.append((record["iter"], record["loss"]))
    return key, val, loss


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _panel(
    draw: ImageDraw.ImageDraw,
    origin: tuple[int, int],
    title: str,
    series: list[list[tuple[int, float]]],
    log_y: bool,
) -> None:
    font, big = _font(11), _font(14)
    x0, y0 = origin
    points = [p for s in series for p in s]
    x_max = max(x for x, _ in points)
    ys = [math.log10(y) if log_y else y for _, y in points]
    if log_y:
        lo, hi = math.floor(min(ys)), math.ceil(max(ys))
        hi = max(hi, lo + 1)  # every value one power of ten
    else:
        lo, hi = 0, max(10, 10 * math.ceil(max(ys) / 10))  # at least 0-10, also for all zeros
    draw.text((x0, y0 - 24), title, fill=_INK, font=big)
    ticks = range(int(lo), int(hi) + 1) if log_y else [hi * i / 5 for i in range(6)]
    for tick in ticks:
        y = y0 + _PANEL_H - (tick - lo) / (hi - lo) * _PANEL_H
        draw.line([(x0, y), (x0 + _PANEL_W, y)], fill=_GRID)
        label = f"{10**tick:g}" if log_y else f"{tick:.0f}"
        draw.text((x0 - 6, y), label, fill=_MUTED, font=font, anchor="rm")
    for i in range(5):
        x = x0 + _PANEL_W * i / 4
        label = f"{x_max * i / 4:.0f}"
        draw.text((x, y0 + _PANEL_H + 6), label, fill=_MUTED, font=font, anchor="mt")
    draw.rectangle([x0, y0, x0 + _PANEL_W, y0 + _PANEL_H], outline=_MUTED)
    for colour, values in zip(COLOURS, series, strict=False):
        xy = [
            (
                x0 + x / x_max * _PANEL_W,
                y0 + _PANEL_H - ((math.log10(y) if log_y else y) - lo) / (hi - lo) * _PANEL_H,
            )
            for x, y in values
        ]
        draw.line(xy, fill=colour, width=2)
        for x, y in xy if not log_y else []:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)


def plot(
    runs: list[tuple[str, list[tuple[int, float]], list[tuple[int, float]]]],
    score: str = "mIoU",
) -> Image.Image:
    width = 2 * _PANEL_W + 3 * _MARGIN + 20
    height = _PANEL_H + 2 * _MARGIN + 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    top = _MARGIN
    _panel(draw, (_MARGIN, top), SCORES[score], [r[1] for r in runs], log_y=False)
    _panel(draw, (2 * _MARGIN + _PANEL_W + 20, top), "training loss", [r[2] for r in runs], True)
    font = _font(12)
    x = _MARGIN
    for colour, (label, _, _) in zip(COLOURS, runs, strict=False):
        draw.line([(x, height - 18), (x + 24, height - 18)], fill=colour, width=3)
        draw.text((x + 30, height - 18), label, fill=_INK, font=font, anchor="lm")
        x += 40 + int(draw.textlength(label, font=font)) + 20
    draw.text((width - _MARGIN, height - 18), "iteration", fill=_MUTED, font=font, anchor="rm")
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--labels", nargs="+")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    labels = args.labels or [run.name for run in args.runs]
    read = [read_metrics(run) for run in args.runs]
    scores = {key for key, _, _ in read}
    if len(scores) > 1:
        parser.error("the runs are of different kinds (segmentation and pretraining)")
    data = [(label, val, loss) for label, (_, val, loss) in zip(labels, read, strict=True)]
    iterations = sorted({i for _, val, _ in data for i, _ in val})
    print("| iteration | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for it in iterations:
        cells = [f"{dict(val).get(it, float('nan')):.2f}" for _, val, _ in data]
        print(f"| {it} | " + " | ".join(cells) + " |")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(data, scores.pop()).save(args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
