"""``s2f segment``: images, folders, globs, videos and pipes -> label maps and overlays."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.markup import escape

from spike2former.assets import example_images
from spike2former.inference.job import (
    OUTPUT_KINDS,
    OutputOptions,
    Record,
    SegmentJob,
    output_paths,
)
from spike2former.inference.journal import (
    ResultJournal,
    RunInfo,
    earlier_records,
    merge_summary,
    stage_speeds,
    wait_for_shares,
)
from spike2former.inference.memory import DEFAULT_MAX_MEMORY
from spike2former.inference.predictor import Predictor
from spike2former.inference.sharding import (
    Shard,
    ShardError,
    resolve_shard,
    shard_device,
    shard_threads,
)
from spike2former.inference.sources import (
    IMAGE_SUFFIXES,
    InputError,
    Source,
    VideoReader,
    expand_sources,
)
from spike2former.weights import DEFAULT_MODEL

from .console import (
    EXIT_PARTIAL,
    EXIT_USAGE,
    fail,
    interrupted_by_sigterm,
    progress_bar,
    reported_errors,
    stderr,
    stdout,
)
from .inference_options import InferenceOptions, silence_opencv, start_runner
from .options import (
    DeviceOption,
    ForceOption,
    ImgszOption,
    MaxMemoryOption,
    ModelOption,
    OfflineOption,
    PrecisionOption,
    QuietOption,
    RecursiveOption,
    ThreadsOption,
    option,
)
from .run_dir import make_run_dir


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
    from_list: Annotated[str | None, option("--from-list", metavar="FILE|-")] = None,
    recursive: RecursiveOption = False,
    vid_stride: Annotated[int, option("--vid-stride", min=1)] = 1,
    imgsz: ImgszOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    batch_size: Annotated[int, option("--batch-size", "One forward pass.", min=1)] = 1,
    max_memory: MaxMemoryOption = DEFAULT_MAX_MEMORY / 2**30,
    threads: ThreadsOption = 0,
    compile_network: Annotated[bool, option("--compile")] = False,
    output: Annotated[
        str | None,
        option(
            "--output",
            "A .png file for a single image (its label map), a folder otherwise; - writes the "
            "label map of a single image to stdout.",
            metavar="PATH|-",
        ),
    ] = None,
    project: Annotated[Path, option("--project")] = Path("runs/segment"),
    name: Annotated[str, option("--name")] = "predict",
    exist_ok: Annotated[bool, option("--exist-ok")] = False,
    force: ForceOption = False,
    save: Annotated[str, option("--save")] = "mask,overlay",
    opacity: Annotated[float, option("--opacity", min=0.0, max=1.0)] = 0.5,
    legend: Annotated[bool, option("--legend")] = False,
    quiet: QuietOption = False,
    json_lines: Annotated[bool, option("--json", "One record per input.")] = False,
    shard: Annotated[str | None, option("--shard", metavar="K/N", show_default=False)] = None,
    skip_existing: Annotated[bool, option("--skip-existing")] = False,
) -> None:
    """Segment images and videos; results go to a new run folder unless -o says otherwise."""
    silence_opencv()
    kinds = {kind.strip() for kind in save.split(",") if kind.strip()}
    if not kinds or not kinds <= set(OUTPUT_KINDS):
        raise fail(
            f"--save takes a comma-separated subset of {', '.join(OUTPUT_KINDS)}", EXIT_USAGE
        )
    try:
        share = resolve_shard(shard)
    except ShardError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    all_items = _expand(sources or [], recursive, from_list)
    to_stdout = output == "-"
    label_file = _label_file(output, all_items)
    if to_stdout or label_file is not None:
        if len(all_items) != 1 or all_items[0].kind == "video":
            raise fail("-o FILE and -o - take exactly one image input", EXIT_USAGE)
        if to_stdout and json_lines:
            raise fail("--json and -o - both write to stdout; choose one", EXIT_USAGE)
    _check_sharding(share, output, to_stdout or label_file is not None, all_items)
    _check_kinds(all_items, kinds)
    if label_file is not None and label_file.exists() and not force:
        raise fail(f"{label_file}: exists; pass --force to replace it", EXIT_USAGE)
    if skip_existing and (output is None or to_stdout or label_file is not None) and not exist_ok:
        raise fail(
            "--skip-existing continues an earlier run: give its folder with -o FOLDER "
            "(or --name NAME --exist-ok)",
            EXIT_USAGE,
        )
    items = share.take(all_items)
    # Under torchrun, rank 0 waits for the other shares and prints the whole job's records.
    leader = share.count > 1 and "TORCHELASTIC_RUN_ID" in os.environ
    quiet = quiet or (leader and share.index > 0)
    device = shard_device(device, share, torch.cuda.device_count())
    threads = shard_threads(threads, share)
    given = InferenceOptions(model, offline, device, precision, threads, imgsz, max_memory)
    predictor = start_runner(Predictor, given, quiet, compile=compile_network)
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
    journal = None
    finished = earlier_records(out_dir) if skip_existing and out_dir is not None else None
    if out_dir is not None:
        journal = ResultJournal(out_dir, share)
        with reported_errors():
            journal.start()
    stream = json_lines and not leader
    with reported_errors():
        records, interrupted = _run(job, items, vid_stride, quiet, stream, journal, finished)
    if predictor.compile_note and not quiet:
        stderr.print(f"[yellow]warning:[/] {escape(predictor.compile_note)}", highlight=False)
    summary = None
    if journal is not None and out_dir is not None:
        if interrupted and share.count > 1:
            journal.close()  # not done: the share's next run (--skip-existing) completes it
        else:
            info = RunInfo(
                model,
                str(predictor.device),
                predictor.precision,
                predictor.compiled,
                predictor.imgsz,
                interrupted,
            )
            with reported_errors():
                journal.finish(info)
                if leader and share.index == 0:
                    wait_for_shares(out_dir, share)
                summary = merge_summary(out_dir, [s.label for s in all_items], share)
    if interrupted:
        where = f" in {out_dir}" if out_dir is not None else ""
        raise fail(
            f"interrupted; the {len(records)} finished inputs have complete results{where}, "
            "nothing partial was kept",
            130,
        )
    if leader and share.index == 0 and summary is not None:
        labels = {s.label for s in all_items}
        records = [Record.from_dict(r) for r in summary["records"] if r["path"] in labels]
        if json_lines:
            for record in records:
                _print_json(record)
    location = out_dir or label_file
    _report(records, predictor, location, quiet, json_lines, to_stdout, share, summary is not None)
    if any(r.status != "ok" for r in records):
        raise typer.Exit(EXIT_PARTIAL)


def _check_sharding(share: Shard, output: str | None, single: bool, items: list[Source]) -> None:
    if share.count == 1:
        return
    if output is None or single:
        raise fail(
            f"share {share.index}/{share.count}: all shares write into one folder; "
            "give it with -o FOLDER",
            EXIT_USAGE,
        )
    if any(s.kind == "stdin" for s in items):
        raise fail("stdin (-) cannot be split between processes", EXIT_USAGE)


def _check_kinds(items: list[Source], kinds: set[str]) -> None:
    """Refuse outputs that some input cannot have (before anything is computed)."""
    video_kinds = {"mask", "overlay", "json"}
    video = next((s for s in items if s.kind == "video"), None)
    if video is not None and not kinds <= video_kinds:
        extra = ", ".join(sorted(kinds - video_kinds))
        raise fail(
            f"{video.label}: videos get mask, overlay and json outputs, not {extra}; "
            "segment the videos in a run of their own",
            EXIT_USAGE,
        )


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
    if not arguments and from_list is None:
        with reported_errors():
            arguments = [str(path) for path in example_images()]
        stderr.print(
            "no SOURCE given: segmenting the example scenes shipped with s2f "
            f"({escape(str(Path(arguments[0]).parent))})",
            highlight=False,
        )
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
    if path.is_dir():
        raise fail(f"{path}: is a folder; -o NAME.png names a file to write", EXIT_USAGE)
    if any(s.path is not None and s.path.resolve() == path.resolve() for s in items):
        raise fail(f"{path}: the output would overwrite an input", EXIT_USAGE)
    return path


def _refuse_overwriting_inputs(items: list[Source], out_dir: Path, kinds: set[str]) -> None:
    inputs = {s.path.resolve() for s in items if s.path is not None}
    for source in items:
        for kind, path in output_paths(out_dir, source, kinds).items():
            target = path.resolve()
            if source.kind == "video" and kind == "mask":
                # the folder of frame label maps replaces what is there
                clobbered = [p for p in inputs if p.is_relative_to(target)]
            else:
                clobbered = [target] if target in inputs else []
            for hit in clobbered:
                raise fail(
                    f"{hit}: writing results here would overwrite an input; "
                    "choose another --output or --project",
                    EXIT_USAGE,
                )


def _run(
    job: SegmentJob,
    items: list[Source],
    vid_stride: int,
    quiet: bool,
    json_lines: bool,
    journal: ResultJournal | None,
    finished: dict[str, Record] | None,
) -> tuple[list[Record], bool]:
    """Run the job with progress on stderr; returns the records and whether Ctrl-C (or the
    launcher's SIGTERM) stopped it."""
    records: list[Record] = []
    live = not quiet and stderr.is_terminal
    progress = progress_bar(live)
    total = sum(_frame_total(s, vid_stride) if s.kind == "video" else 1 for s in items)
    task = progress.add_task("segmenting", total=total)

    def on_record(record: Record) -> None:
        if journal is not None:
            journal.add(record)
        records.append(record)
        earlier = finished is not None and finished.get(record.path) is record
        if record.status != "ok":
            stderr.print(f"[bold red]error:[/] {escape(record.message)}", highlight=False)
        elif not quiet and not live:
            line = _one_line(record) + (" (complete from an earlier run)" if earlier else "")
            stderr.print(line, highlight=False, markup=False)
        if record.frames is None:
            progress.advance(task)
        if json_lines:
            _print_json(record)

    with progress, interrupted_by_sigterm():
        try:
            job.run(items, on_record, lambda frames: progress.advance(task, frames), finished)
        except KeyboardInterrupt:
            return records, True
    return records, False


def _print_json(record: Record) -> None:
    stdout.print(json.dumps(record.as_dict()), highlight=False, markup=False, soft_wrap=True)


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


def _report(
    records: list[Record],
    predictor: Predictor,
    location: Path | None,
    quiet: bool,
    json_lines: bool,
    to_stdout: bool,
    share: Shard,
    merged: bool,
) -> None:
    """The closing lines: speed, what failed, where the results are (nothing of the sort when
    no input succeeded)."""
    if quiet:
        return
    failed = sum(r.status != "ok" for r in records)
    of_share = f" of share {share.index}/{share.count}" if share.count > 1 and not merged else ""
    if records and failed == len(records):
        which = "the input" if failed == 1 else f"all {failed} inputs"
        stderr.print(f"No results: {which}{of_share} failed", highlight=False)
        return
    speed = stage_speeds(records)
    stderr.print(
        f"Speed: {speed['preprocess']:.1f}ms preprocess, {speed['inference']:.1f}ms inference, "
        f"{speed['postprocess']:.1f}ms postprocess per image or frame ({predictor.device}, "
        f"{predictor.precision}{', compiled' if predictor.compiled else ''})"
        + (f"; compiling took {speed['compile'] / 1000:.1f}s" if speed["compile"] else "")
        + (f"; {failed} of {len(records)} inputs{of_share} failed" if failed else ""),
        highlight=False,
    )
    if location is None:
        return
    where = escape(str(location))
    if share.count > 1 and not merged:
        stderr.print(
            f"Results of share {share.index}/{share.count} saved to [bold]{where}[/]; "
            "summary.json is written by the last share to finish",
            highlight=False,
        )
    else:
        stderr.print(f"Results saved to [bold]{where}[/]", highlight=False)
    if not json_lines and not to_stdout:
        stdout.print(str(location), highlight=False, markup=False)
