"""``s2f segment``: images, folders, globs, videos and pipes -> label maps and overlays."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from spike2former.atomic import write_atomically
from spike2former.inference.job import OUTPUT_KINDS, OutputOptions, Record, SegmentJob
from spike2former.inference.predictor import Predictor
from spike2former.inference.sources import (
    IMAGE_SUFFIXES,
    InputError,
    Source,
    VideoReader,
    expand_sources,
)
from spike2former.weights import DEFAULT_MODEL

from .console import EXIT_USAGE, fail, reported_errors, stderr, stdout
from .inference_options import (
    DeviceOption,
    ImgszOption,
    PrecisionOption,
    RecursiveOption,
    ThreadsOption,
    load_for_inference,
    silence_opencv,
)
from .model_option import ModelOption, OfflineOption
from .run_dir import make_run_dir

EXIT_PARTIAL = 3


def segment(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SOURCE...",
            help="Images, directories, quoted globs, videos, or - for one image on stdin.",
            show_default=False,
        ),
    ] = None,
    model: ModelOption = DEFAULT_MODEL,
    offline: OfflineOption = False,
    from_list: Annotated[
        str | None,
        typer.Option("--from-list", metavar="FILE|-", help="Read more sources, one per line."),
    ] = None,
    recursive: RecursiveOption = False,
    vid_stride: Annotated[int, typer.Option(min=1, help="Segment every N-th video frame.")] = 1,
    imgsz: ImgszOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 1,
    threads: ThreadsOption = 0,
    compile_network: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="Compile the network with torch.compile: faster for many inputs of one size; "
            "the first pass of each size takes a minute or more.",
        ),
    ] = False,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH|-",
            help="A .png file for a single image, a folder otherwise; - writes the label map of "
            "a single image to stdout.",
        ),
    ] = None,
    project: Annotated[Path, typer.Option(help="Parent folder of run folders.")] = Path(
        "runs/segment"
    ),
    name: Annotated[str, typer.Option(help="Run folder name (predict, predict2, ...).")] = (
        "predict"
    ),
    exist_ok: Annotated[bool, typer.Option(help="Reuse PROJECT/NAME if it exists.")] = False,
    save: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated outputs: {', '.join(OUTPUT_KINDS)} (videos: mask and overlay)."
        ),
    ] = "mask,overlay",
    opacity: Annotated[float, typer.Option(min=0.0, max=1.0, help="Overlay opacity.")] = 0.5,
    legend: Annotated[bool, typer.Option(help="Draw a class legend on overlays.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    json_lines: Annotated[
        bool, typer.Option("--json", help="Print one JSON record per input on stdout.")
    ] = False,
) -> None:
    """Segment images and videos; results go to a new run folder unless -o says otherwise."""
    silence_opencv()
    kinds = {kind.strip() for kind in save.split(",") if kind.strip()}
    if not kinds or not kinds <= set(OUTPUT_KINDS):
        raise fail(
            f"--save takes a comma-separated subset of {', '.join(OUTPUT_KINDS)}", EXIT_USAGE
        )
    items = _expand(sources or [], recursive, from_list)
    to_stdout = output == "-"
    label_file = _label_file(output, items)
    if to_stdout or label_file is not None:
        if len(items) != 1 or items[0].kind == "video":
            raise fail("-o FILE and -o - take exactly one image input", EXIT_USAGE)
        if to_stdout and json_lines:
            raise fail("--json and -o - both write to stdout; choose one", EXIT_USAGE)
    network = load_for_inference(model, offline, device, precision, threads)
    with reported_errors():
        predictor = Predictor(
            network, device=device, precision=precision, imgsz=imgsz, compile=compile_network
        )
    if predictor.precision_note and not quiet:
        stderr.print(f"[yellow]warning:[/] {predictor.precision_note}", highlight=False)
    if compile_network and not quiet:
        stderr.print(
            "compiling the network at the first batch of each size (a minute or more)",
            highlight=False,
        )

    out_dir = None
    if not to_stdout and label_file is None:
        try:
            out_dir = Path(output) if output else make_run_dir(project, name, exist_ok)
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise fail(f"cannot create the output folder ({exc})") from None
        _refuse_overwriting_inputs(items, out_dir, kinds)
    stdin_data = sys.stdin.buffer.read if any(s.kind == "stdin" for s in items) else None
    job = SegmentJob(
        predictor,
        out_dir,
        OutputOptions(frozenset(kinds), opacity, legend),
        batch_size=batch_size,
        vid_stride=vid_stride,
        label_target=sys.stdout.buffer if to_stdout else label_file,
        read_stdin=stdin_data,
    )
    records, interrupted = _run(job, items, vid_stride, quiet, json_lines)
    if predictor.compile_note and not quiet:
        stderr.print(f"[yellow]warning:[/] {escape(predictor.compile_note)}", highlight=False)
    if out_dir is not None:
        _write_summary(out_dir, records, predictor, model, interrupted)
    if interrupted:
        where = f" in {out_dir}" if out_dir is not None else ""
        raise fail(
            f"interrupted; the {len(records)} finished inputs have complete results{where}, "
            "nothing partial was kept",
            130,
        )
    _report(records, predictor, out_dir or label_file, quiet, json_lines, to_stdout)
    if any(r.status != "ok" for r in records):
        raise typer.Exit(EXIT_PARTIAL)


def _expand(arguments: list[str], recursive: bool, from_list: str | None) -> list[Source]:
    lines: list[str] = []
    if from_list == "-":
        if "-" in arguments:
            raise fail("stdin cannot hold both an image and a list of paths", EXIT_USAGE)
        lines = sys.stdin.read().splitlines()
    elif from_list is not None:
        try:
            lines = Path(from_list).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"{from_list}: cannot read the list ({exc})", EXIT_USAGE) from None
    try:
        items = expand_sources(arguments, recursive, lines)
    except InputError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if not items:
        raise fail("nothing to segment: give images, folders, videos or -", EXIT_USAGE)
    return items


def _label_file(output: str | None, items: list[Source]) -> Path | None:
    """``-o`` names a file (not a folder) when it has an image suffix."""
    if output is None or output == "-":
        return None
    path = Path(output)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    if path.suffix.lower() != ".png":
        raise fail(f"{path}: label maps are written as PNG; use a .png name", EXIT_USAGE)
    if any(s.path is not None and s.path.resolve() == path.resolve() for s in items):
        raise fail(f"{path}: the output would overwrite an input", EXIT_USAGE)
    return path


def _refuse_overwriting_inputs(items: list[Source], out_dir: Path, kinds: set[str]) -> None:
    inputs = {s.path.resolve() for s in items if s.path is not None}
    suffixes = {"mask": ".png", "overlay": "_overlay.jpg", "json": ".json", "logits": "_logits.npy"}
    for source in items:
        base = (out_dir / source.stem).resolve()
        if source.kind == "video":
            # the overlay video, and the folder of frame label maps that replaces what is there
            targets = [base.with_name(base.name + "_overlay.mp4")] if "overlay" in kinds else []
            if "mask" in kinds:
                targets += [p for p in inputs if p.is_relative_to(base)]
        else:
            targets = [base.with_name(base.name + suffixes[kind]) for kind in kinds]
        for target in targets:
            if target in inputs:
                raise fail(
                    f"{target}: writing results here would overwrite an input; "
                    "choose another --output or --project",
                    EXIT_USAGE,
                )


def _run(
    job: SegmentJob, items: list[Source], vid_stride: int, quiet: bool, json_lines: bool
) -> tuple[list[Record], bool]:
    """Run the job with progress on stderr; returns the records and whether Ctrl-C stopped it."""
    records: list[Record] = []
    live = not quiet and stderr.is_terminal
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        disable=not live,
        transient=True,
    )
    total = sum(_frame_total(s, vid_stride) if s.kind == "video" else 1 for s in items)
    task = progress.add_task("segmenting", total=total)

    def on_record(record: Record) -> None:
        records.append(record)
        if record.status != "ok":
            stderr.print(f"[bold red]error:[/] {escape(record.message)}", highlight=False)
        elif not quiet and not live:
            stderr.print(_one_line(record), highlight=False, markup=False)
        if record.frames is None:
            progress.advance(task)
        if json_lines:
            stdout.print(
                json.dumps(record.as_dict()), highlight=False, markup=False, soft_wrap=True
            )

    with progress:
        try:
            job.run(items, on_record, lambda frames: progress.advance(task, frames))
        except KeyboardInterrupt:
            return records, True
    return records, False


def _frame_total(source: Source, stride: int) -> int:
    try:
        reader = VideoReader(source.path)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - reported when the job reaches it
        return 1
    reader.close()
    return max(1, -(-reader.info.frame_count // stride))


def _one_line(record: Record) -> str:
    top = ", ".join(f"{c['name']} {100 * c['fraction']:.0f}%" for c in record.classes[:3])
    size = "x".join(str(v) for v in record.size or [])
    frames = f", {record.frames} frames" if record.frames is not None else ""
    timings = record.timings_ms
    took = (
        f"compiled and ran in {timings['compile'] / 1000:.1f} s"
        if "inference" not in timings and "compile" in timings
        else f"{timings.get('inference', 0):.0f} ms"
    )
    return f"{record.path}: {size}{frames}, {top}, {took}"


def _speed(records: list[Record]) -> dict[str, float]:
    """Mean ms per image or frame of each stage (passes that compiled left out of inference),
    and the total ms spent in passes that compiled."""
    done = [r for r in records if r.status == "ok"]
    speed = {"compile": sum(r.timings_ms.get("compile", 0.0) for r in done)}
    for key in ("preprocess", "inference", "postprocess"):
        timed = [r.timings_ms[key] for r in done if key in r.timings_ms]
        speed[key] = sum(timed) / len(timed) if timed else 0.0
    return speed


def _write_summary(
    out_dir: Path, records: list[Record], predictor: Predictor, model: str, interrupted: bool
) -> None:
    speed = _speed(records)
    summary: dict[str, Any] = {
        "model": model,
        "device": str(predictor.device),
        "precision": predictor.precision,
        "compiled": predictor.compiled,
        "imgsz": predictor.imgsz,
        "inputs": len(records),
        "ok": sum(r.status == "ok" for r in records),
        "failed": sum(r.status != "ok" for r in records),
        "interrupted": interrupted,
        "speed_ms_per_image": {k: round(v, 2) for k, v in speed.items() if k != "compile"},
        "compile_ms": round(speed["compile"], 2),
        "records": [r.as_dict() for r in records],
    }
    text = json.dumps(summary, indent=2).encode()
    write_atomically(out_dir / "summary.json", lambda tmp: Path(tmp).write_bytes(text))


def _report(
    records: list[Record],
    predictor: Predictor,
    location: Path | None,
    quiet: bool,
    json_lines: bool,
    to_stdout: bool,
) -> None:
    if quiet:
        return
    speed = _speed(records)
    failed = sum(r.status != "ok" for r in records)
    stderr.print(
        f"Speed: {speed['preprocess']:.1f}ms preprocess, {speed['inference']:.1f}ms inference, "
        f"{speed['postprocess']:.1f}ms postprocess per image or frame ({predictor.device}, "
        f"{predictor.precision}{', compiled' if predictor.compiled else ''})"
        + (f"; compiling took {speed['compile'] / 1000:.1f}s" if speed["compile"] else "")
        + (f"; {failed} of {len(records)} inputs failed" if failed else ""),
        highlight=False,
    )
    if location is not None:
        stderr.print(f"Results saved to [bold]{escape(str(location))}[/]", highlight=False)
        if not json_lines and not to_stdout:
            stdout.print(str(location), highlight=False, markup=False)
