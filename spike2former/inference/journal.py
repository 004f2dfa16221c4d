"""Records of a segmentation job written as inputs finish, and ``summary.json`` merged from them.

Every process (one, or one per share of a sharded job) appends a JSON line per finished input to
``OUT/.s2f-shards/K-of-N.jsonl`` and flushes it, so a killed process loses at most the inputs it
was working on; at its end it writes ``K-of-N.done.json`` saying how it ran. Whichever process
finds all N shares done writes ``summary.json`` (the records in input order: what one process
would have written). A single process then removes its files; a sharded job keeps them, so that
a share run again later (``--skip-existing`` after a kill) merges with the others once more.
``--skip-existing`` reads earlier records back from ``summary.json`` and any journals.

A folder can receive several jobs. The summary keeps the records of earlier jobs' inputs that
this job neither repeated nor overwrote, when they were made the same way (model, precision,
input size); an earlier summary made another way is kept whole as ``summary.N.json``.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from ..atomic import write_atomically
from ..errors import OutputError
from .job import Record
from .sharding import Shard

SHARES_FOLDER = ".s2f-shards"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class RunInfo:
    """How one process ran (its share's header in the summary)."""

    model: str
    device: str
    precision: str
    compiled: bool
    imgsz: int | None
    interrupted: bool = False


class ResultJournal:
    """This process's finished records, one flushed JSON line each."""

    def __init__(self, out_dir: Path, shard: Shard) -> None:
        self.out_dir = out_dir
        self.shard = shard
        folder = out_dir / SHARES_FOLDER
        self.records_path = folder / f"{shard.name}.jsonl"
        self.done_path = folder / f"{shard.name}.done.json"
        self._file: IO[str] | None = None

    def start(self) -> None:
        """Begin the share afresh (an earlier attempt's lines are read before this, if wanted)."""
        try:
            self.records_path.parent.mkdir(parents=True, exist_ok=True)
            self.done_path.unlink(missing_ok=True)
            self._file = self.records_path.open("w", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{self.records_path}: cannot write ({exc})") from None

    def add(self, record: Record) -> None:
        assert self._file is not None, "start() first"
        try:
            self._file.write(json.dumps(record.as_dict()) + "\n")
            self._file.flush()
        except OSError as exc:
            raise OutputError(f"{self.records_path}: cannot write ({exc})") from None

    def finish(self, info: RunInfo) -> None:
        """Mark the share done; its records are complete, or ``info.interrupted`` says not."""
        self.close()
        text = json.dumps(asdict(info)).encode()
        write_atomically(self.done_path, lambda tmp: Path(tmp).write_bytes(text))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def earlier_records(out_dir: Path) -> dict[str, Record]:
    """Records of earlier runs into ``out_dir`` by input label: ``summary.json``'s, overridden
    by any share journal's (newer). Unreadable files and torn last lines are ignored."""
    found: dict[str, Record] = {}
    try:
        summary = json.loads((out_dir / SUMMARY).read_text(encoding="utf-8"))
        found.update(_by_label(summary.get("records", [])))
    except (OSError, ValueError, AttributeError):
        pass
    for journal in sorted((out_dir / SHARES_FOLDER).glob("*.jsonl")):
        found.update(_by_label(_read_lines(journal)))
    return found


def share_is_done(out_dir: Path, shard: Shard) -> bool:
    folder = out_dir / SHARES_FOLDER
    return all((folder / f"{i}-of-{shard.count}.done.json").exists() for i in range(shard.count))


def merge_summary(out_dir: Path, labels: Sequence[str], shard: Shard) -> dict[str, Any] | None:
    """Write ``summary.json`` once every share of ``shard.count`` is done; returns it, or
    ``None`` while shares are missing (or another process merged them first)."""
    if not share_is_done(out_dir, shard):
        return None
    folder = out_dir / SHARES_FOLDER
    names = [f"{i}-of-{shard.count}" for i in range(shard.count)]
    try:
        runs = [
            RunInfo(**json.loads((folder / f"{n}.done.json").read_text(encoding="utf-8")))
            for n in names
        ]
    except (OSError, ValueError, TypeError):
        return None  # rewritten by a share that started again
    by_label: dict[str, Record] = {}
    for name in names:
        by_label.update(_by_label(_read_lines(folder / f"{name}.jsonl")))
    records = [by_label[label] for label in labels if label in by_label]
    earlier, kept = _earlier_summary(out_dir), []
    if earlier is not None:
        if _same_making(earlier, runs[0]):
            kept = _untouched_records(earlier, records)
        else:
            _set_aside(out_dir)
    summary = build_summary(kept + records, runs)
    text = json.dumps(summary, indent=2).encode()
    write_atomically(out_dir / SUMMARY, lambda tmp: Path(tmp).write_bytes(text))
    if shard.count == 1:
        # A sharded job keeps its shares' files: a share rerun later merges with them again.
        (folder / f"{names[0]}.done.json").unlink(missing_ok=True)
        (folder / f"{names[0]}.jsonl").unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            pass  # files of a sharded run into the same folder
    return summary


def stage_speeds(records: Iterable[Record]) -> dict[str, float]:
    """Mean ms per image or frame of each stage (passes that compiled left out of inference),
    and the total ms spent in passes that compiled."""
    done = [r for r in records if r.status == "ok"]
    speed = {"compile": sum(r.timings_ms.get("compile", 0.0) for r in done)}
    for key in ("preprocess", "inference", "postprocess"):
        timed = [r.timings_ms[key] for r in done if key in r.timings_ms]
        speed[key] = sum(timed) / len(timed) if timed else 0.0
    return speed


def build_summary(records: list[Record], runs: Sequence[RunInfo]) -> dict[str, Any]:
    """``summary.json``: how the job ran (devices of all shares), counts, speeds, records."""
    speed = stage_speeds(records)
    first = runs[0]
    return {
        "model": first.model,
        "device": ", ".join(dict.fromkeys(run.device for run in runs)),
        "precision": first.precision,
        "compiled": any(run.compiled for run in runs),
        "imgsz": first.imgsz,
        "shards": len(runs),
        "inputs": len(records),
        "ok": sum(r.status == "ok" for r in records),
        "failed": sum(r.status != "ok" for r in records),
        "interrupted": any(run.interrupted for run in runs),
        "speed_ms_per_image": {k: round(v, 2) for k, v in speed.items() if k != "compile"},
        "compile_ms": round(speed["compile"], 2),
        "records": [r.as_dict() for r in records],
    }


# What must match for an earlier job's records to share this job's summary (RunInfo fields,
# written under the same names at the top of the summary).
MAKING_KEYS = ("model", "precision", "imgsz")


def _earlier_summary(out_dir: Path) -> dict[str, Any] | None:
    """The folder's ``summary.json`` from before this job, if readable."""
    try:
        summary = json.loads((out_dir / SUMMARY).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: set aside rather than lost
    return summary if isinstance(summary, dict) else {}


def _same_making(earlier: dict[str, Any], run: RunInfo) -> bool:
    return bool(earlier) and all(earlier.get(key) == getattr(run, key) for key in MAKING_KEYS)


def _untouched_records(earlier: dict[str, Any], records: Sequence[Record]) -> list[Record]:
    """Earlier records whose input this job did not repeat and whose files it did not replace."""
    labels = {r.path for r in records}
    written = {name for r in records for name in r.files}
    rows = earlier.get("records")
    kept = _by_label(rows if isinstance(rows, list) else []).values()
    return [r for r in kept if r.path not in labels and written.isdisjoint(r.files)]


def _set_aside(out_dir: Path) -> None:
    """Keep the earlier ``summary.json`` as the first free ``summary.N.json``."""
    source = out_dir / SUMMARY
    for number in itertools.count(1):
        target = out_dir / f"summary.{number}.json"
        try:
            os.link(source, target)  # never replaces a file that appeared meanwhile
            return
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links: copy it instead
            break
    try:
        data = source.read_bytes()
        write_atomically(target, lambda tmp: Path(tmp).write_bytes(data))
    except OSError as exc:
        raise OutputError(f"{source}: cannot keep it as {target.name} ({exc})") from None


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # the line a killed process was writing
    return rows


def _by_label(rows: Iterable[Any]) -> dict[str, Record]:
    found = {}
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("path"), str):
            try:
                found[row["path"]] = Record.from_dict(row)
            except TypeError:
                continue
    return found


def wait_for_shares(out_dir: Path, shard: Shard, poll_seconds: float = 0.5) -> None:
    """Block until every share of the job is done (the launcher stops all processes when one
    fails, so this never waits on a dead share under torchrun)."""
    while not share_is_done(out_dir, shard):
        time.sleep(poll_seconds)
