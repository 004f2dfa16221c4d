"""A segmentation job: sources in, result files and one record per input out.

Decoding of the next batch and writing of finished results run in background threads while the
network computes. A bad input becomes a failed record and the job goes on.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..atomic import remove_leftovers, write_together
from ..datasets.metadata import is_background
from ..errors import S2FError
from .memory import MemoryLimitError
from .outputs import FrameFolder, VideoOutput, encode_image, label_png, overlay, write_bytes
from .predictor import Prediction, Predictor
from .sources import ImageReadError, Source, VideoReader, decode_image, read_image

OUTPUT_KINDS = ("mask", "overlay", "json", "logits")
_LEGEND_ENTRIES = 12


@dataclass(frozen=True)
class OutputOptions:
    """Which files to write per input (``OUTPUT_KINDS``) and how overlays look."""

    kinds: frozenset[str] = frozenset({"mask", "overlay"})
    opacity: float = 0.5
    legend: bool = False


@dataclass
class Record:
    """What happened to one input (written to ``summary.json`` and printed by ``--json``)."""

    path: str
    status: str = "ok"
    message: str = ""
    files: list[str] = field(default_factory=list)
    size: list[int] | None = None
    classes: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    frames: int | None = None

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if v is not None}
        data["timings_ms"] = {k: round(v, 2) for k, v in self.timings_ms.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """The record ``as_dict`` wrote (unknown keys ignored)."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


_IMAGE_SUFFIXES = {"mask": ".png", "overlay": "_overlay.jpg", "logits": "_logits.npy"}


def output_paths(
    out_dir: Path, source: Source, kinds: frozenset[str] | set[str]
) -> dict[str, Path]:
    """Where each result kind of a source goes (for a video: the overlay video and the frame
    folder), in the order of ``Record.files``."""
    base = out_dir / source.stem
    if source.kind == "video":
        named = [("overlay", "_overlay.mp4"), ("mask", ""), ("json", ".json")]
    else:
        named = [*_IMAGE_SUFFIXES.items(), ("json", ".json")]
    return {kind: base.with_name(base.name + suffix) for kind, suffix in named if kind in kinds}


def is_complete(record: Record, out_dir: Path, source: Source, kinds: frozenset[str]) -> bool:
    """Whether ``record`` is a finished result of ``source`` whose files, exactly the ones the
    current ``kinds`` ask for, are all in place (each was written atomically)."""
    expected = list(output_paths(out_dir, source, kinds).values())
    return (
        record.status == "ok"
        and record.files == [str(path) for path in expected]
        and all(path.exists() for path in expected)
    )


@dataclass(eq=False)
class SegmentJob:
    """Segments ``Source`` items with ``predictor`` and writes results.

    Args:
        out_dir: folder for result files (``NAME.png``, ``NAME_overlay.jpg``, ...).
        label_target: instead of ``out_dir``, where the label map of the single image input goes:
            a file path, or a binary stream such as stdout.
        read_stdin: returns the bytes of the ``-`` input.
    """

    predictor: Predictor
    out_dir: Path | None
    options: OutputOptions
    batch_size: int = 1
    vid_stride: int = 1
    label_target: Path | BinaryIO | None = None
    read_stdin: Callable[[], bytes] | None = None

    def run(
        self,
        sources: Sequence[Source],
        on_record: Callable[[Record], None] = lambda record: None,
        on_frames: Callable[[int], None] = lambda frames: None,
        finished: Mapping[str, Record] | None = None,
    ) -> list[Record]:
        """Process every source in order; ``on_record`` is called as each input finishes and
        ``on_frames`` after each processed video batch (for progress).

        ``finished``: records of an earlier run by input label; an input whose record is complete
        (``is_complete``) is reported as it was, without running the network again.
        """
        records: list[Record] = []
        done = self._reusable(sources, finished or {})
        if self.out_dir is not None:
            every_kind = frozenset(OUTPUT_KINDS)
            remove_leftovers(
                [
                    path
                    for source in sources
                    for path in output_paths(self.out_dir, source, every_kind).values()
                ]
            )
        with ThreadPoolExecutor(2, thread_name_prefix="s2f-io") as pool:
            self._pool = pool
            for chunk in _chunks(sources, done):
                if chunk[0].label in done:
                    new = [done[source.label] for source in chunk]
                    on_frames(sum(record.frames or 0 for record in new))
                elif chunk[0].kind == "video":
                    new = [self._video(chunk[0], on_frames)]
                else:
                    new = self._images(chunk)
                for record in new:
                    records.append(record)
                    on_record(record)
        return records

    def _reusable(
        self, sources: Sequence[Source], finished: Mapping[str, Record]
    ) -> dict[str, Record]:
        if self.out_dir is None or not finished:
            return {}
        done = {}
        for source in sources:
            record = finished.get(source.label)
            if record is not None and is_complete(record, self.out_dir, source, self.options.kinds):
                done[source.label] = record
        return done

    # Images ------------------------------------------------------------------------------------

    def _images(self, sources: Sequence[Source]) -> Iterator[Record]:
        batches = [
            sources[i : i + self.batch_size] for i in range(0, len(sources), self.batch_size)
        ]
        decoding = self._pool.submit(self._decode_batch, batches[0])
        for i in range(len(batches)):
            decoded = decoding.result()
            if i + 1 < len(batches):
                decoding = self._pool.submit(self._decode_batch, batches[i + 1])
            good = [(source, image) for source, image, _ in decoded if image is not None]
            predictions = self._predict(good)
            pending: list[tuple[Record, list[Future]]] = []
            for source, image, error in decoded:
                record = Record(path=source.label)
                prediction = predictions.get(id(source), error)
                if not isinstance(prediction, Prediction):
                    record.status, record.message = "error", str(prediction)
                    pending.append((record, []))
                    continue
                self._describe(record, image, prediction)
                pending.append(
                    (record, self._write_image_results(source, image, prediction, record))
                )
            for record, futures in pending:
                yield _settle(record, futures)

    def _predict(self, batch: Sequence[tuple[Source, np.ndarray]]) -> dict[int, Prediction | str]:
        """Predictions by ``id(source)``; when the batch does not fit in memory, one image at a
        time, and an image that does not fit alone gets its one-line message instead."""
        keep_scores = "logits" in self.options.kinds
        try:
            predictions = self.predictor.predict([image for _, image in batch], keep_scores)
            return {id(s): p for (s, _), p in zip(batch, predictions, strict=True)}
        except MemoryLimitError as exc:
            if len(batch) == 1:
                return {id(batch[0][0]): f"{batch[0][0].label}: {exc}"}
        results: dict[int, Prediction | str] = {}
        for item in batch:
            results.update(self._predict([item]))
        return results

    def _decode_batch(
        self, batch: Sequence[Source]
    ) -> list[tuple[Source, np.ndarray | None, str | None]]:
        decoded = []
        for source in batch:
            try:
                if source.kind == "stdin":
                    if self.read_stdin is None:
                        raise ImageReadError("<stdin>: no standard input available")
                    image = decode_image(self.read_stdin(), "<stdin>")
                else:
                    assert source.path is not None
                    image = read_image(source.path)
                decoded.append((source, image, None))
            except ImageReadError as exc:
                decoded.append((source, None, str(exc)))
        return decoded

    def _describe(self, record: Record, image: np.ndarray, prediction: Prediction) -> None:
        record.size = [int(image.shape[0]), int(image.shape[1])]
        names = self.predictor.class_names
        record.classes = [
            {"id": c, "name": names[c], "fraction": round(f, 6)}
            for c, f in prediction.class_fractions().items()
        ]
        record.timings_ms = dict(prediction.timings_ms)

    def _write_image_results(
        self, source: Source, image: np.ndarray, prediction: Prediction, record: Record
    ) -> list[Future]:
        palette = self.predictor.palette
        encoders: dict[str, Callable[[], bytes]] = {
            "mask": lambda: label_png(prediction.labels, palette),
            "overlay": lambda: encode_image(".jpg", self._overlay(image, prediction)),
            "logits": lambda: _npy(prediction),
            "json": lambda: json.dumps(record.as_dict(), indent=2).encode(),
        }
        if self.label_target is None:
            assert self.out_dir is not None
            targets = dict(output_paths(self.out_dir, source, self.options.kinds))
        elif isinstance(self.label_target, Path):
            # The label map goes where -o says; other results of a file target beside it.
            target = self.label_target
            beside = Source(source.kind, None, target.stem)
            targets = {"mask": target}
            targets.update(output_paths(target.parent, beside, self.options.kinds - {"mask"}))
        else:
            stream = self.label_target
            return [self._pool.submit(_to_stream, stream, encoders["mask"])]
        record.files = [str(path) for path in targets.values()]
        # json last: it lists the other files
        return [self._pool.submit(_write_all, [(p, encoders[k]) for k, p in targets.items()])]

    def _overlay(
        self, image: np.ndarray, prediction: Prediction, video: bool = False
    ) -> np.ndarray:
        """The colour overlay of ``prediction`` on ``image``, background left as photographed,
        with the legend when asked for: the classes present, largest first; for a video, every
        class when they fit, so the legend does not change from frame to frame."""
        names, palette = self.predictor.class_names, self.predictor.palette
        legend: list[tuple[str, tuple[int, int, int]]] = []
        if self.options.legend:
            if video and len(names) <= _LEGEND_ENTRIES:
                shown = list(range(len(names)))
            else:
                shown = list(prediction.class_fractions())[:_LEGEND_ENTRIES]
            legend = [(names[c], palette[c]) for c in shown]
        unblended = [c for c, name in enumerate(names) if is_background(name)]
        return overlay(image, prediction.labels, palette, self.options.opacity, legend, unblended)

    # Videos ------------------------------------------------------------------------------------

    def _video(self, source: Source, on_frames: Callable[[int], None]) -> Record:
        record = Record(path=source.label)
        assert source.path is not None and self.out_dir is not None
        try:
            reader = VideoReader(source.path)
        except ImageReadError as exc:
            record.status, record.message = "error", str(exc)
            return record
        info = reader.info
        record.size = [info.height, info.width]
        try:
            batch_size = self._frames_per_pass(info.height, info.width)
        except MemoryLimitError as exc:
            reader.close()
            record.status, record.message = "error", f"{source.label}: {exc}"
            return record
        base = self.out_dir / source.stem
        video = frames_out = None
        counts = np.zeros(self.predictor.num_classes, dtype=np.int64)
        timings: dict[str, float] = {}
        timed: dict[str, int] = {}
        processed = 0
        try:
            if "overlay" in self.options.kinds:
                video = VideoOutput(
                    base.with_name(base.name + "_overlay.mp4"),
                    info.fps / self.vid_stride,
                    (info.width, info.height),
                )
            if "mask" in self.options.kinds:
                frames_out = FrameFolder(base)
            batch: list[tuple[int, np.ndarray]] = []
            frames = reader.frames(self.vid_stride)
            while True:
                item = next(frames, None)
                if item is not None:
                    batch.append(item)
                if batch and (item is None or len(batch) == batch_size):
                    predictions = self.predictor.predict([frame for _, frame in batch])
                    for (index, frame), prediction in zip(batch, predictions, strict=True):
                        counts += np.bincount(prediction.labels.ravel(), minlength=len(counts))
                        for key, value in prediction.timings_ms.items():
                            timings[key] = timings.get(key, 0.0) + value
                            timed[key] = timed.get(key, 0) + 1
                        if video is not None:
                            video.write(self._overlay(frame, prediction, video=True))
                        if frames_out is not None:
                            frames_out.write(
                                f"{index:06d}.png",
                                label_png(prediction.labels, self.predictor.palette),
                            )
                    processed += len(batch)
                    on_frames(len(batch))
                    batch = []
                if item is None:
                    break
            for output in (video, frames_out):
                if output is not None:
                    output.close()
                    record.files.append(str(output.path))
        except BaseException as exc:
            for output in (video, frames_out):
                if output is not None:
                    output.discard()
            if not isinstance(exc, (OSError, S2FError)):
                raise
            record.status, record.message = "error", f"{source.label}: cannot write results ({exc})"
            record.files = []
            return record
        finally:
            reader.close()
        record.frames = processed
        if processed:
            total = counts.sum()
            names = self.predictor.class_names
            record.classes = [
                {"id": int(c), "name": names[c], "fraction": round(float(counts[c] / total), 6)}
                for c in np.argsort(-counts, kind="stable")
                if counts[c]
            ]
            # Means per frame; compilation (first frames of a compiled run) in total.
            record.timings_ms = {
                k: v if k == "compile" else v / timed[k] for k, v in timings.items()
            }
        else:
            record.status, record.message = "error", f"{source.label}: no frames decoded"
        if "json" in self.options.kinds and record.status == "ok":
            self._write_video_record(record, base.with_name(base.name + ".json"))
        return record

    def _frames_per_pass(self, height: int, width: int) -> int:
        """The batch size, or 1 when that many frames do not fit in memory at once (raises
        ``MemoryLimitError`` when one frame does not)."""
        try:
            self.predictor.check_fits(height, width, self.batch_size)
            return self.batch_size
        except MemoryLimitError:
            if self.batch_size == 1:
                raise
        self.predictor.check_fits(height, width, 1)
        return 1

    def _write_video_record(self, record: Record, path: Path) -> None:
        """The record as ``NAME.json`` beside the video's other results; if it cannot be
        written, those go too (an input's results are all there or none)."""
        written = [Path(f) for f in record.files]
        record.files.append(str(path))
        try:
            write_bytes(path, json.dumps(record.as_dict(), indent=2).encode())
        except S2FError as exc:
            for output in written:
                if output.is_dir():
                    shutil.rmtree(output, ignore_errors=True)
                else:
                    output.unlink(missing_ok=True)
            record.status, record.message = "error", f"{record.path}: cannot write results ({exc})"
            record.files = []


def _chunks(sources: Sequence[Source], done: Mapping[str, Record]) -> Iterator[list[Source]]:
    """Consecutive image inputs together, consecutive finished inputs together; each video on
    its own."""
    group: list[Source] = []
    for source in sources:
        kind = _kind_of(source, done)
        if group and (kind == "video" or kind != _kind_of(group[-1], done)):
            yield group
            group = []
        group.append(source)
    if group:
        yield group


def _kind_of(source: Source, done: Mapping[str, Record]) -> str:
    return "done" if source.label in done else source.kind


def _settle(record: Record, futures: list[Future]) -> Record:
    """Wait for an input's writes; a failed write turns its record into an error."""
    for future in futures:
        try:
            future.result()
        except (OSError, S2FError) as exc:
            record.status = "error"
            record.message = f"{record.path}: cannot write results ({exc})"
    if record.status == "error":
        record.files = []
    return record


def _write_all(targets: list[tuple[Path, Callable[[], bytes]]]) -> None:
    """Encode an input's results, then write them all or none."""
    write_together([(path, encode()) for path, encode in targets])


def _to_stream(stream: BinaryIO, encode: Callable[[], bytes]) -> None:
    stream.write(encode())
    stream.flush()


def _npy(prediction: Prediction) -> bytes:
    """Class scores ``[K, h, w]`` at the network input size, float16 ``.npy``."""
    assert prediction.scores is not None
    buffer = io.BytesIO()
    np.save(buffer, prediction.scores.numpy().astype(np.float16))
    return buffer.getvalue()
