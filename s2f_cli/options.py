"""The command line's vocabulary: every option name with its one meaning, declared once.

``VOCABULARY`` maps each long option to what it means, whichever command takes it (README's
option table is this table; ``tests/cli/test_vocabulary.py`` holds every command's ``--help`` to
it). A command declares an option with ``option(FLAG, detail)``: the meaning, then what is
particular to that command. Options that several commands take with the same type, choices and
limits are declared here once, as ``Annotated`` types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from spike2former.datasets import FORMATS
from spike2former.weights import DEFAULT_MODEL

DATASET_LAYOUTS = (*FORMATS, "cocostuff")

VOCABULARY: dict[str, str] = {
    # every command that runs or writes a model
    "--model": "The model: a registered name (see `s2f models`; downloaded on first use) or an "
    "s2f model file.",
    "--offline": "Never download; use only cached or local files (also S2F_OFFLINE=1).",
    "--output": "Where the results are written.",
    "--force": "Replace an existing output file.",
    "--json": "Print JSON on stdout instead of tables or lines.",
    "--quiet": "No progress or notes: only errors and the results.",
    "--device": "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps; under torchrun each "
    "process takes GPU LOCAL_RANK.",
    "--precision": "Arithmetic of the network.",
    "--imgsz": "Short side images are resized to for the network; 0 keeps their own size.",
    "--threads": "CPU threads for torch; 0 keeps its default.",
    "--batch-size": "Images per batch.",
    # inputs
    "--recursive": "Look into sub-directories of folder inputs.",
    "--from-list": "Read more inputs from a file, one per line (- for stdin).",
    "--vid-stride": "Use every N-th video frame.",
    "--limit": "Use at most N images (video frames count as images).",
    # segment
    "--max-memory": "Host memory one forward pass may take, in GB; larger inputs are refused "
    "with a line saying so. 0: whatever is free.",
    "--compile": "Compile the network with torch.compile: faster for many inputs of one size; "
    "the first pass of each size takes a minute or more.",
    "--project": "Parent folder of run folders.",
    "--name": "Run folder name (predict, predict2, ...).",
    "--exist-ok": "Reuse PROJECT/NAME if it exists.",
    "--save": "Comma-separated outputs per input: mask, overlay, json, logits (videos: all but "
    "logits).",
    "--opacity": "Overlay opacity.",
    "--legend": "Draw a class legend on overlays.",
    "--shard": "Process share K (0 to N-1) of N of the inputs, into the -o folder all shares "
    "write to; under torchrun or with RANK/WORLD_SIZE set, the share is theirs.",
    "--skip-existing": "Skip inputs whose results in the output folder are complete (from an "
    "earlier or interrupted run); the summary keeps their records.",
    # firing-rates
    "--csv": "Print CSV on stdout instead of tables.",
    "--plot": "Also draw a bar chart of the per-layer rates into this PNG file.",
    "--energy": "Also estimate energy per module, part and image (slower).",
    "--stages": "all: embed every decoder stage (official definition); last: only the last "
    "stage, as s2f inference does.",
    # datasets (train, eval)
    "--data": "Dataset root.",
    "--format": "Dataset layout.",
    "--split": "Split to score.",
    "--train-split": "Training split.",
    "--val-split": "Validation split; none trains without validation.",
    # eval
    "--mode": "whole (the official test) or slide (sliding windows).",
    "--window": "Sliding window (--mode slide).",
    "--stride": "Sliding window step (--mode slide).",
    # train
    "--preset": "Train a fresh network of this architecture.",
    "--num-classes": "Classes of the head (rebuilds the class layer).",
    "--init-backbone": "ImageNet backbone weights (a path or a registered backbone).",
    "--recipe": "Recipe to start from.",
    "--iters": "Training iterations; the warm-up and the decay's end move in proportion (the "
    "official schedule at the recipe's own length).",
    "--crop-size": "Training crop.",
    "--lr": "Base learning rate (used as given).",
    "--weight-decay": "AdamW weight decay.",
    "--backbone-lr-mult": "Backbone learning rate as a fraction of --lr (official 0.1; 1 for "
    "a backbone trained from scratch).",
    "--warmup-iters": "Linear warm-up length.",
    "--poly-end": "Iteration at which the poly decay reaches 0.",
    "--clip-grad": "Global gradient-norm clip; 0 = none.",
    "--pipeline": "Training augmentation.",
    "--eval-interval": "Validate every N iterations.",
    "--checkpoint-interval": "Checkpoint every N iterations.",
    "--conventional": "Train the same network as a conventional one: real-valued neurons "
    "clamp(x, 0, D) / D instead of spikes.",
    "--amp": "Mixed precision (bf16; fp16 on GPUs without bf16).",
    "--recompute-backbone": "Activation checkpointing: the backbone's blocks run again in "
    "backward instead of keeping their activations. The same gradients, less memory, more "
    "time. Without it, only where the step would not fit in memory otherwise.",
    "--seed": "Seed of initialisation and data order.",
    "--log-interval": "Log every N iterations.",
    "--workers": "Data-loading processes.",
    "--resume": "Continue the run in -o from its last checkpoint.",
    # convert
    "--time-steps": "Real time steps T the model was trained with.",
    "--class-names": "Text file with one class name per line, to store.",
    "--dataset": "Store the class names of a known dataset.",
    # download
    "--sha256": "Expected SHA-256 of the downloaded file.",
    "--cache-name": "Name in the cache, for URLs and paths.",
    "--timeout": "Seconds to wait for a connection or data.",
}
SHORT = {
    "--model": "-m",
    "--output": "-o",
    "--quiet": "-q",
    "--recursive": "-r",
    "--time-steps": "-T",
}


def option(flag: str, detail: str = "", **settings: Any) -> Any:
    """``typer.Option`` for ``flag``: its short form, its meaning, then ``detail`` (what is
    particular to one command)."""
    names = [flag, SHORT[flag]] if flag in SHORT else [flag]
    meaning = VOCABULARY[flag] + (f" {detail}" if detail else "")
    return typer.Option(*names, help=meaning, **settings)


ModelOption = Annotated[
    str,
    option("--model", metavar="NAME|PATH", show_default=f"{DEFAULT_MODEL}, shipped with s2f"),
]
OfflineOption = Annotated[bool, option("--offline")]
QuietOption = Annotated[bool, option("--quiet")]
JsonOption = Annotated[bool, option("--json")]
DeviceOption = Annotated[str, option("--device")]
PrecisionOption = Annotated[Literal["fp32", "fp16", "bf16", "fp64"], option("--precision")]
ImgszOption = Annotated[int | None, option("--imgsz", min=0, show_default="the model's test size")]
ThreadsOption = Annotated[int, option("--threads", min=0)]
RecursiveOption = Annotated[bool, option("--recursive")]
MaxMemoryOption = Annotated[float, option("--max-memory", min=0, metavar="GB")]
DataOption = Annotated[Path, option("--data", metavar="DIR", show_default=False)]
DatasetFormatOption = Annotated[
    Literal[DATASET_LAYOUTS],  # type: ignore[valid-type]
    option(
        "--format", "(cocostuff: either COCO-Stuff layout, found under --data)", show_default=False
    ),
]
ForceOption = Annotated[bool, option("--force")]

# Options of the commands that train (train, pretrain).
# The data order's generators (numpy's SeedSequence, torch) take non-negative 32-bit seeds.
MAX_SEED = 2**32 - 1
IterationsOption = Annotated[int | None, option("--iters", min=1)]
WeightDecayOption = Annotated[float | None, option("--weight-decay", min=0.0)]
EvalIntervalOption = Annotated[int | None, option("--eval-interval", min=1)]
CheckpointIntervalOption = Annotated[int | None, option("--checkpoint-interval", min=1)]
TrainSplitOption = Annotated[str, option("--train-split")]
ValSplitOption = Annotated[str, option("--val-split")]
ConventionalOption = Annotated[bool, option("--conventional")]
SeedOption = Annotated[int, option("--seed", min=0, max=MAX_SEED)]
LogIntervalOption = Annotated[int, option("--log-interval", min=1)]
WorkersOption = Annotated[int, option("--workers", min=0)]
ResumeOption = Annotated[bool, option("--resume")]
RUN_FOLDER_HELP = "The run folder (refused if it exists, unless --resume)."
