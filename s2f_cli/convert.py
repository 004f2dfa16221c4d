"""``s2f convert``: an official Spike2Former checkpoint -> an s2f model file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from spike2former.config import ModelConfig
from spike2former.convert import convert_checkpoint
from spike2former.datasets.metadata import DATASET_CLASSES

from .console import EXIT_USAGE, fail, reported_errors, stderr, stdout
from .options import ForceOption, QuietOption, option
from .targets import check_output_file


def convert(
    source: Annotated[
        Path,
        typer.Argument(
            help="Official checkpoint: mmseg .pth (dict with 'state_dict' or a bare state dict) "
            "or .safetensors with official key names.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        option("--output", "The model file.", show_default="SOURCE_STEM.s2f.safetensors"),
    ] = None,
    time_steps: Annotated[
        int,
        option(
            "--time-steps",
            "4 for the official COCO-Stuff models; not stored in checkpoints.",
            min=1,
        ),
    ] = 1,
    class_names: Annotated[Path | None, option("--class-names")] = None,
    dataset: Annotated[
        str | None,
        option("--dataset", f"One of {', '.join(DATASET_CLASSES)}.", metavar="NAME"),
    ] = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Convert an official checkpoint; the architecture is read off its keys and shapes."""
    if source.is_dir():
        raise fail(f"{source}: is a folder, not a checkpoint file", EXIT_USAGE)
    if not source.is_file():
        raise fail(f"{source}: no such file", EXIT_USAGE)
    destination = output or source.with_name(source.stem + ".s2f.safetensors")
    _check_destination(destination, source, force)
    if class_names and dataset:
        raise fail("give either --class-names or --dataset, not both", EXIT_USAGE)
    if dataset is not None and dataset not in DATASET_CLASSES:
        raise fail(f"unknown dataset {dataset!r}; known: {', '.join(DATASET_CLASSES)}", EXIT_USAGE)
    names = _read_class_names(class_names) if class_names else None
    names = DATASET_CLASSES[dataset] if dataset else names
    with reported_errors():
        if not quiet:
            with stderr.status(f"converting {source} ..."):
                config = convert_checkpoint(source, destination, time_steps, names)
            stderr.print(_summary(config))
        else:
            config = convert_checkpoint(source, destination, time_steps, names)
    stdout.print(str(destination), highlight=False)


def _check_destination(destination: Path, source: Path, force: bool) -> None:
    """Refuse, before converting, an output that cannot or must not be written."""
    if os.path.realpath(destination) == os.path.realpath(source):
        raise fail(f"{destination}: the output would overwrite the source checkpoint", EXIT_USAGE)
    check_output_file(destination, "-o", force, "the model file")


def _read_class_names(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"{path}: cannot read class names ({exc})", EXIT_USAGE) from None
    return tuple(line.strip() for line in lines if line.strip())


def _summary(config: ModelConfig) -> Table:
    b, h = config.backbone, config.head
    table = Table(title="Inferred architecture", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        (
            "backbone",
            f"{b.version}, embed dims {list(b.embed_dims)}, depths {b.stage3_depth}+"
            f"{b.stage4_depth}, T={b.time_steps}, D={b.levels}",
        ),
        ("classes", str(h.num_classes) + (" (names stored)" if config.class_names else "")),
        ("head", f"{h.channels} channels, {h.num_queries} queries"),
        (
            "pixel decoder",
            f"{h.encoder_layers} DCN layers (groups {h.dcn_groups}, kernel "
            f"{h.dcn_kernel_size}, depthwise {h.dcn_dw_kernel_size}), FFN {h.encoder_ffn_channels}",
        ),
        (
            "decoder",
            f"{h.decoder_layers} layers, FFN {h.decoder_ffn_channels}, "
            f"{h.decoder_heads} heads, D={h.spike_levels}",
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table
