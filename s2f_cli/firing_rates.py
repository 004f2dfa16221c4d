"""``s2f firing-rates``: per-layer firing rates and energy estimates of a model over images.

Under ``torchrun`` (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``) each process measures every ``WORLD_SIZE``-th input and rank 0 reports the whole
run, merged in input order: the same report as one process.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spike2former.atomic import write_together
from spike2former.firing.energy import EnergyReport
from spike2former.firing.monitor import LayerFiring, by_part, pooled
from spike2former.firing.plot import firing_rate_chart
from spike2former.firing.records import ImageRecord
from spike2former.firing.run import FiringRun
from spike2former.inference.images import each_image
from spike2former.inference.memory import DEFAULT_MAX_MEMORY, MemoryLimitError
from spike2former.inference.sharding import Shard, ShardError, shard_from_environment, shard_threads
from spike2former.inference.sources import InputError, Source, expand_sources
from spike2former.training.distributed import DistributedContext, shutdown
from spike2former.weights import DEFAULT_MODEL

from . import options
from .api_options import described
from .console import (
    EXIT_PARTIAL,
    EXIT_USAGE,
    fail,
    progress_bar,
    reported_errors,
    stderr,
    stdout,
)
from .inference_options import InferenceOptions, silence_opencv, start_runner
from .options import option
from .processes import process_group
from .targets import check_output_file

_TOP_MODULES = 10
# Tables written to a file or a pipe are as wide as their longest layer name needs.
_FILE_WIDTH = 160


def firing_rates(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SOURCE...",
            help="Images, directories, quoted globs, videos (every frame is an image), or - for "
            "one image on stdin.",
            show_default=False,
        ),
    ] = None,
    model: options.ModelOption = DEFAULT_MODEL,
    offline: options.OfflineOption = False,
    recursive: options.RecursiveOption = False,
    imgsz: options.ImgszOption = None,
    device: options.DeviceOption = "auto",
    precision: options.PrecisionOption = "fp32",
    threads: options.ThreadsOption = 0,
    limit: Annotated[int | None, option("--limit", min=1)] = None,
    json_report: Annotated[
        bool, option("--json", "Definitions, settings, images, layers.")
    ] = False,
    csv_report: Annotated[bool, option("--csv")] = False,
    output: Annotated[
        Path | None,
        option("--output", "A file for the report, instead of stdout.", metavar="FILE"),
    ] = None,
    plot: Annotated[Path | None, option("--plot", metavar="FILE.png")] = None,
    force: options.ForceOption = False,
    max_memory: options.MaxMemoryOption = DEFAULT_MAX_MEMORY / 2**30,
    energy: Annotated[bool, option("--energy")] = False,
    stages: Annotated[Literal["all", "last"], option("--stages")] = "all",
    quiet: options.QuietOption = False,
) -> None:
    """Per-layer firing rates (and energy) of a model, each image a separate forward.

    Under torchrun the images are spread over the processes.
    """
    silence_opencv()
    if json_report and csv_report:
        raise fail("--json and --csv both choose the report's format; give one", EXIT_USAGE)
    output_format = "json" if json_report else "csv" if csv_report else "table"
    if plot is not None and plot.suffix.lower() != ".png":
        raise fail(f"{plot}: the plot is a PNG; use a .png name", EXIT_USAGE)
    launch = _launch()
    items = _expand(sources or [], recursive)
    targets = {"-o": output, "--plot": plot}
    _refuse_overwriting_inputs(items, [p for p in targets.values() if p is not None])
    if output is not None and plot is not None and output.resolve() == plot.resolve():
        raise fail("-o and --plot name the same file", EXIT_USAGE)
    for flag, target in targets.items():
        if target is not None:
            check_output_file(target, flag, force)
    mine, limit = _share(items, limit, launch)
    context = _join(device, launch)
    try:
        if launch is not None:
            device, threads = str(context.device), shard_threads(threads, launch)
        # the other processes print only the errors of their own inputs
        quiet = quiet or not context.is_main
        given = InferenceOptions(model, offline, device, precision, threads, imgsz, max_memory)
        run = _start(given, stages, energy, quiet)
        if _measure(run, mine, limit, quiet):
            raise fail("interrupted; nothing was written", 130)
        with reported_errors():
            run.gather(context)
    finally:
        shutdown(context)
    if not context.is_main:
        return
    failed = len(run.records) - run.measured
    if run.measured:
        with reported_errors():
            _write_outputs(run, model, output_format, output, plot)
    if not quiet:
        summary = f"{run.measured} image(s) measured"
        if failed:
            summary += f"; {failed} of {len(run.records)} inputs failed"
        stderr.print(summary, highlight=False)
    if failed:
        raise typer.Exit(EXIT_PARTIAL)


def _launch() -> Shard | None:
    """The share ``RANK``/``WORLD_SIZE`` give this process, if a launcher set them."""
    try:
        return shard_from_environment()
    except ShardError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


def _share(
    items: list[Source], limit: int | None, launch: Shard | None
) -> tuple[list[tuple[int, Source]], int | None]:
    """This process's inputs with their positions in the job, and the limit left to apply to
    them (a limit over several processes is applied to the inputs here)."""
    numbered = list(enumerate(items))
    if launch is None or launch.count == 1:
        return numbered, limit
    if any(source.kind == "stdin" for source in items):
        raise fail("stdin (-) cannot be split between processes: give files", EXIT_USAGE)
    if limit is not None:
        if any(source.kind == "video" for source in items):
            raise fail(
                "--limit counts video frames, which cannot be split between processes: "
                "give images only, or run one process",
                EXIT_USAGE,
            )
        numbered = numbered[:limit]
    return launch.take(numbered), None


def _join(device: str, launch: Shard | None) -> DistributedContext:
    """The process group the launcher describes (one process when none)."""
    return DistributedContext() if launch is None else process_group(device)


def _start(given: InferenceOptions, stages: str, energy: bool, quiet: bool) -> FiringRun:
    """The model's ``FiringRun`` (see ``start_runner``), and a warning for a conventional
    model, whose counts are not spikes."""
    all_stages = stages == "all"
    run = start_runner(FiringRun, given, quiet, _too_large, all_stages=all_stages, energy=energy)
    if not run.network.config.spiking and not quiet:
        stderr.print(
            "[yellow]warning:[/] the model is conventional (real-valued neurons): its 'counts' "
            "are activations x D, not spikes, and its energy is the conventional column",
            highlight=False,
        )
    return run


def _expand(arguments: list[str], recursive: bool) -> list[Source]:
    try:
        items = expand_sources(arguments, recursive)
    except InputError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if not items:
        raise fail("nothing to measure: give images, folders, videos or -", EXIT_USAGE)
    return items


def _too_large(exc: MemoryLimitError) -> str:
    """What does not fit, and the options that would make it."""
    advice = "give a smaller --imgsz" + (", or raise --max-memory" if exc.capped_by_user else "")
    return f"{described(exc)}; {advice}"


def _refuse_overwriting_inputs(items: list[Source], targets: list[Path]) -> None:
    inputs = {s.path.resolve() for s in items if s.path is not None}
    for target in targets:
        if target.resolve() in inputs:
            raise fail(f"{target}: the output would overwrite an input", EXIT_USAGE)


def _measure(
    run: FiringRun, items: list[tuple[int, Source]], limit: int | None, quiet: bool
) -> bool:
    """Measure every input (up to ``limit``); returns whether Ctrl-C stopped the run."""
    live = not quiet and stderr.is_terminal
    progress = progress_bar(live)
    total = limit if limit is not None and limit < len(items) else None
    task = progress.add_task("measuring", total=total or len(items))
    with progress:
        try:
            images = each_image(items, sys.stdin.buffer.read)
            for count, (position, label, image, error) in enumerate(images):
                if limit is not None and count >= limit:
                    break
                record = None
                if image is not None:
                    record, error = _measure_one(run, image, label, position)
                if record is None:
                    run.fail(label, error or "unreadable", position)
                    stderr.print(f"[bold red]error:[/] {escape(error or label)}", highlight=False)
                elif not quiet and not live:
                    stderr.print(_one_line(record), highlight=False, markup=False)
                progress.advance(task)
        except KeyboardInterrupt:
            return True
    return False


def _measure_one(
    run: FiringRun, image: np.ndarray, label: str, position: int
) -> tuple[ImageRecord | None, str | None]:
    """The image's record, or the line saying why it was not measured (too large)."""
    try:
        return run.measure(image, label, position), None
    except MemoryLimitError as exc:
        return None, f"{label}: {_too_large(exc)}"


def _one_line(record: ImageRecord) -> str:
    size = "x".join(str(v) for v in record.size or [])
    network = "x".join(str(v) for v in record.network_size or [])
    count = (record.spikes or 0) / max(record.outputs or 1, 1)
    text = f"{record.path}: {size} -> {network}, {record.spikes:,} spikes, mean count {count:.3f}"
    if record.energy_mj is not None:
        text += f", {record.energy_mj:.3f} mJ (conventional {record.conventional_mj:.3f} mJ)"
    return text + f", {record.time_ms:.0f} ms"


# Outputs ---------------------------------------------------------------------------------------


def _write_outputs(
    run: FiringRun, model: str, output_format: str, output: Path | None, plot: Path | None
) -> None:
    """The report (to ``output`` or stdout) and the plot; the files appear together or not at
    all, and stdout gets the report only once they are written."""
    if output_format == "json":
        text = json.dumps(run.to_dict(model), indent=2) + "\n"
    elif output_format == "csv":
        text = run.csv_text()
    else:
        text = None
    files: list[tuple[Path, bytes]] = []
    if output is not None:
        if text is None:
            buffer = io.StringIO()
            _print_tables(
                Console(file=buffer, width=_FILE_WIDTH, color_system=None, emoji=False), run, model
            )
            text = buffer.getvalue()
        files.append((output, text.encode()))
    if plot is not None:
        title = f"Firing rate per neuron layer: {Path(model).name}, {run.measured} image(s)"
        settings = run.settings(model)
        subtitle = (
            f"imgsz {settings['imgsz']}, {settings['precision']}; {_stages_short(run)}; "
            "bar = mean spike count / D"
        )
        files.append((plot, firing_rate_chart(run.layers(), title, subtitle)))
    write_together(files)
    if output is not None:
        return
    if text is not None:
        sys.stdout.write(text)
        sys.stdout.flush()
    elif stdout.is_terminal:
        _print_tables(stdout, run, model)
    else:
        _print_tables(Console(width=_FILE_WIDTH, color_system=None, emoji=False), run, model)


def _stages_short(run: FiringRun) -> str:
    return "all decoder stages (official)" if run.all_stages else "last decoder stage only"


def _print_tables(console: Console, run: FiringRun, model: str) -> None:
    settings = run.settings(model)
    console.print(
        f"[bold]Firing rates[/] of {escape(model)}: {run.measured} image(s), imgsz "
        f"{settings['imgsz']}, {settings['precision']} on {settings['device']}; "
        f"{escape(run.stages)}",
        highlight=False,
    )
    console.print(_firing_table(run.layers()))
    console.print(
        "mean count: spikes per neuron output, in [0, D] (official definition); rate: mean "
        "count / D, spikes per virtual time step; zeros / saturated: outputs with k = 0 / k = D.",
        highlight=False,
    )
    report = run.energy()
    if report is not None:
        console.print(_energy_table(report))
        console.print(_module_table(report))
        constants = report.constants
        console.print(
            f"Spiking: {constants.ac_pj} pJ per synaptic operation (MACs x mean spike count of "
            f"the input) and {constants.mac_pj} pJ per real MAC; conventional: {constants.mac_pj}"
            " pJ per MAC. Every accounting rule and all modules: --format json.",
            highlight=False,
        )


def _firing_row(layer: LayerFiring, name: str) -> list[str]:
    return [
        name,
        str(layer.levels) if layer.levels else "-",
        f"{layer.outputs:,}",
        f"{layer.mean_count:.4f}",
        f"{layer.rate:.4f}",
        f"{100 * layer.zero_frac:.1f}%",
        f"{100 * layer.sat_frac:.1f}%",
    ]


def _firing_table(layers: list[LayerFiring]) -> Table:
    table = Table(title="Firing rates per neuron layer", title_justify="left")
    table.add_column("Layer", overflow="fold")
    for column in ("D", "Outputs", "Mean count", "Rate", "Zeros", "Saturated"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    groups: dict[str, list[LayerFiring]] = {}
    for layer in layers:
        groups.setdefault(layer.part, []).append(layer)
    for part in by_part(layers):
        table.add_row(*_firing_row(part, f"[bold]{part.name}[/]"), style="bold")
        for layer in groups[part.name]:
            table.add_row(*_firing_row(layer, "  " + escape(layer.name)))
        table.add_section()
    table.add_row(*_firing_row(pooled("total", layers), "[bold]total[/]"), style="bold")
    return table


def _energy_table(report: EnergyReport) -> Table:
    table = Table(title="Energy per image", title_justify="left")
    table.add_column("Part", overflow="fold")
    for column in (
        "MACs (G)",
        "SOPs (G)",
        "Real MACs (G)",
        "Spiking (mJ)",
        "Conventional (mJ)",
        "Ratio",
    ):
        table.add_column(column, justify="right", no_wrap=True)
    for total in [*report.by_part(), report.total()]:
        bold = total.name == "total"
        if bold:
            table.add_section()
        table.add_row(
            total.name,
            f"{total.macs / 1e9:.3f}",
            f"{total.sops / 1e9:.3f}",
            f"{total.real_macs / 1e9:.3f}",
            f"{total.energy_mj:.4f}",
            f"{total.conventional_mj:.4f}",
            f"{total.ratio:.2f}x",
            style="bold" if bold else None,
        )
    return table


def _module_table(report: EnergyReport) -> Table:
    modules = sorted(report.by_module(), key=lambda t: -t.energy_mj)[:_TOP_MODULES]
    table = Table(title=f"The {len(modules)} most expensive modules", title_justify="left")
    table.add_column("Module", overflow="fold")
    for column in ("MACs (G)", "SOPs (G)", "Spiking (mJ)", "Conventional (mJ)"):
        table.add_column(column, justify="right", no_wrap=True)
    for total in modules:
        table.add_row(
            escape(total.name or "(model)"),
            f"{total.macs / 1e9:.3f}",
            f"{total.sops / 1e9:.3f}",
            f"{total.energy_mj:.4f}",
            f"{total.conventional_mj:.4f}",
        )
    return table
