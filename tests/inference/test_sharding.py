"""Shares of a job (``inference.sharding``), the shares' records (``inference.journal``) and the
clean-up of what a killed writer leaves (``atomic.remove_leftovers``)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from spike2former.atomic import remove_leftovers, temporary_name
from spike2former.inference.job import Record
from spike2former.inference.journal import (
    ResultJournal,
    RunInfo,
    earlier_records,
    merge_summary,
)
from spike2former.inference.sharding import (
    Shard,
    ShardError,
    parse_shard,
    resolve_shard,
    shard_device,
    shard_from_environment,
    shard_threads,
)

INFO = RunInfo("m", "cpu", "fp32", False, 64)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shares_cover_every_input_once(count: int) -> None:
    items = list(range(23))
    shares = [Shard(i, count).take(items) for i in range(count)]
    assert sorted(x for share in shares for x in share) == items
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_parse_and_environment() -> None:
    assert parse_shard("1/4") == Shard(1, 4)
    for bad in ("4/4", "-1/2", "0/0", "a/b", "1", "1/2/3"):
        with pytest.raises(ShardError):
            parse_shard(bad)
    assert shard_from_environment({}) is None
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert shard_from_environment(env) == Shard(3, 4, 1, 2)
    assert resolve_shard(None, env) == Shard(3, 4, 1, 2)
    assert resolve_shard("0/2", {}) == Shard(0, 2)
    assert resolve_shard("0/2", {"RANK": "0", "WORLD_SIZE": "1"}) == Shard(0, 2)
    with pytest.raises(ShardError, match="one or the other"):
        resolve_shard("0/2", env)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"RANK": "abc", "WORLD_SIZE": "2"}, "RANK='abc' in the environment is not a number"),
        ({"RANK": "0", "WORLD_SIZE": ""}, "WORLD_SIZE='' in the environment is not a number"),
        ({"RANK": "0", "WORLD_SIZE": "9" * 5000}, "WORLD_SIZE='9999999999"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "need 0 <= RANK < WORLD_SIZE"),
        ({"RANK": "-1", "WORLD_SIZE": "2"}, "need 0 <= RANK < WORLD_SIZE"),
        ({"WORLD_SIZE": "2"}, "RANK and WORLD_SIZE must be set together"),
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "one"}, "LOCAL_RANK='one'"),
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "-1"}, "need LOCAL_RANK >= 0"),
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "x"}, "LOCAL_WORLD_SIZE='x'"),
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "0"}, "need LOCAL_WORLD_SIZE >= 1"),
    ],
)
def test_bad_environment_is_named(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ShardError) as raised:
        shard_from_environment(env)
    message = str(raised.value)
    assert fragment in message and "\n" not in message and len(message) < 120


def test_device_and_threads_per_local_process() -> None:
    two_local = Shard(3, 4, 1, 2)
    assert shard_device("auto", two_local, cuda_devices=2) == "cuda:1"
    assert shard_device("cuda", two_local, cuda_devices=1) == "cuda:0"
    assert shard_device("cpu", two_local, cuda_devices=2) == "cpu"
    assert shard_device("auto", two_local, cuda_devices=0) == "auto"
    assert shard_device("auto", Shard(1, 2), cuda_devices=2) == "auto"  # one process here
    assert shard_threads(0, two_local, cpus=16) == 8
    assert shard_threads(3, two_local, cpus=16) == 3
    assert shard_threads(0, Shard(0, 2), cpus=16) == 0


def test_summary_merged_only_when_every_share_is_done(tmp_path: Path) -> None:
    labels = [f"in/{i}.png" for i in range(5)]
    journals = [ResultJournal(tmp_path, Shard(i, 2)) for i in range(2)]
    for journal in journals:
        journal.start()
        for label in journal.shard.take(labels):
            journal.add(Record(label, files=[f"{label}.out"], timings_ms={"inference": 1.0}))
    journals[1].finish(INFO)
    assert merge_summary(tmp_path, labels, Shard(1, 2)) is None
    journals[0].finish(RunInfo("m", "cuda:0", "fp32", False, 64))
    summary = merge_summary(tmp_path, labels, Shard(0, 2))
    assert summary is not None
    assert [r["path"] for r in summary["records"]] == labels
    assert (summary["device"], summary["shards"], summary["inputs"]) == ("cuda:0, cpu", 2, 5)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    # the shares' files stay for a share that runs again; one process's are removed
    assert len(list((tmp_path / ".s2f-shards").iterdir())) == 4


def test_single_process_leaves_no_share_files(tmp_path: Path) -> None:
    journal = ResultJournal(tmp_path, Shard())
    journal.start()
    journal.add(Record("a.png"))
    journal.finish(INFO)
    assert merge_summary(tmp_path, ["a.png"], Shard()) is not None
    assert not (tmp_path / ".s2f-shards").exists()


def _single_job(folder: Path, labels: list[str], info: RunInfo = INFO) -> dict:
    journal = ResultJournal(folder, Shard())
    journal.start()
    for label in labels:
        journal.add(Record(label, files=[str(folder / (Path(label).stem + ".png"))]))
    journal.finish(info)
    summary = merge_summary(folder, labels, Shard())
    assert summary is not None
    return summary


def test_later_job_keeps_earlier_records_it_did_not_redo(tmp_path: Path) -> None:
    _single_job(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    # b.jpg again, and another c.jpg whose label map replaces the first one's c.png
    summary = _single_job(tmp_path, ["d.jpg", "b.jpg", "other/c.jpg"])
    paths = [r["path"] for r in summary["records"]]
    assert paths == ["a.jpg", "d.jpg", "b.jpg", "other/c.jpg"]
    assert summary["inputs"] == 4
    assert not list(tmp_path.glob("summary.*.json"))


def test_summary_made_another_way_is_set_aside(tmp_path: Path) -> None:
    first = _single_job(tmp_path, ["a.jpg"])
    other_size = RunInfo("m", "cpu", "fp32", False, 128)
    second = _single_job(tmp_path, ["b.jpg"], other_size)
    assert [r["path"] for r in second["records"]] == ["b.jpg"]
    assert json.loads((tmp_path / "summary.1.json").read_text()) == first
    (tmp_path / "summary.json").write_text("{not json")
    third = _single_job(tmp_path, ["c.jpg"], other_size)
    assert [r["path"] for r in third["records"]] == ["c.jpg"]
    assert (tmp_path / "summary.2.json").read_text() == "{not json"
    assert json.loads((tmp_path / "summary.1.json").read_text()) == first


def test_earlier_records_survive_a_torn_line(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(
        json.dumps({"records": [{"path": "a", "status": "ok"}, {"path": "b", "status": "ok"}]})
    )
    journal = ResultJournal(tmp_path, Shard(0, 2))
    journal.start()
    journal.add(Record("b", status="error", message="b: bad"))
    journal.close()
    with (tmp_path / ".s2f-shards" / "0-of-2.jsonl").open("a") as file:
        file.write('{"path": "c", "sta')  # killed while writing
    found = earlier_records(tmp_path)
    assert sorted(found) == ["a", "b"]
    assert found["b"].status == "error"  # the journal is newer than the summary


def test_leftovers_of_the_given_targets_only(tmp_path: Path) -> None:
    mine, other = tmp_path / "a.png", tmp_path / "b.png"
    left = [
        Path(tempfile.mkstemp(**temporary_name(mine))[1]),
        Path(tempfile.mkstemp(**temporary_name(tmp_path / "v.mp4", keep_suffix=True))[1]),
        Path(tempfile.mkdtemp(**temporary_name(tmp_path / "clip"))),
    ]
    kept = [
        Path(tempfile.mkstemp(**temporary_name(other))[1]),
        tmp_path / ".a.png.notrandom.tmp",
        tmp_path / ".hidden",
    ]
    for path in kept[1:]:
        path.write_text("not ours")
    removed = remove_leftovers([mine, tmp_path / "v.mp4", tmp_path / "clip", tmp_path / "x/y"])
    assert removed == 3
    assert not any(path.exists() for path in left)
    assert all(path.exists() for path in kept)
