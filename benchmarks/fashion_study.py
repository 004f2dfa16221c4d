"""The spiking-versus-conventional table of the fashion recipe, from the runs it left.

    python benchmarks/fashion_study.py WORK [--plots DIR]

Reads what ``fashion_recipe.sh WORK spiking`` and ``fashion_recipe.sh WORK conventional`` wrote
(``runs/pretrain-KIND`` and ``runs/seg-KIND``: their ``metrics.jsonl`` and ``test.json``) and,
where present, ``runs/seg-KIND/errors.json`` (``fashion_errors.py ... > errors.json``) and
``runs/seg-spiking/firing.json`` (``s2f firing-rates ... --energy --json``). Prints one Markdown
table, a row per network, with what is missing shown as "not run". With ``--plots DIR`` it also
draws both networks' curves of each stage (``pretraining_curves.png``,
``segmentation_curves.png``) with ``learning_curves.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from learning_curves import plot, read_metrics

KINDS = ("spiking", "conventional")
MISSING = "not run"
COLUMNS = (
    "Network",
    "Pretraining best val top-1 (iteration)",
    "Segmentation best val mIoU (iteration)",
    "Test mIoU",
    "Test aAcc",
    "Foreground IoU",
    "Objects named right",
    "Energy per image",
)


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _best(run: Path) -> str:
    """The best validation score of a run and its iteration, or ``MISSING``."""
    if not (run / "metrics.jsonl").is_file():
        return MISSING
    _, scores, _ = read_metrics(run)
    if not scores:
        return MISSING
    iteration, score = max(scores, key=lambda pair: pair[1])
    return f"{score:.2f} ({iteration:,})"


def _score(report: dict[str, Any] | None, key: str) -> str:
    return MISSING if report is None or report.get(key) is None else f"{report[key]:.2f}"


def _energy(kind: str, firing: dict[str, Any] | None) -> str:
    """Spiking: the measured energy; conventional: every operation of the same network as a
    real multiply-accumulate (the same network's ``conventional_mj``)."""
    if firing is None:
        return MISSING
    total = firing["energy"]["total"]
    if kind == "spiking":
        return f"{total['energy_mj']:.2f} mJ (firing rate {firing['total']['rate']:.3f})"
    return f"{total['conventional_mj']:.2f} mJ"


def study_rows(work: Path) -> list[list[str]]:
    firing = _json(work / "runs" / "seg-spiking" / "firing.json")
    rows = []
    for kind in KINDS:
        seg = work / "runs" / f"seg-{kind}"
        errors, test = _json(seg / "errors.json"), _json(seg / "test.json")
        rows.append(
            [
                kind,
                _best(work / "runs" / f"pretrain-{kind}"),
                _best(seg),
                _score(test, "mIoU"),
                _score(test, "aAcc"),
                _score(errors, "foreground_iou"),
                _score(errors, "object_accuracy"),
                _energy(kind, firing),
            ]
        )
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="the folder fashion_recipe.sh worked in")
    parser.add_argument("--plots", type=Path, help="draw both networks' curves into this folder")
    args = parser.parse_args()
    print(markdown(study_rows(args.work)))
    if args.plots is None:
        return
    args.plots.mkdir(parents=True, exist_ok=True)
    for stage, name in (("pretrain", "pretraining"), ("seg", "segmentation")):
        present = [
            (kind, read_metrics(run))
            for kind in KINDS
            if ((run := args.work / "runs" / f"{stage}-{kind}") / "metrics.jsonl").is_file()
        ]
        if present:
            data = [(kind, val, loss) for kind, (_, val, loss) in present]
            target = args.plots / f"{name}_curves.png"
            plot(data, present[0][1][0]).save(target)
            print(f"wrote {target}")


if __name__ == "__main__":
    main()
