"""Two gloo processes under torchrun update the network exactly as one process does on the same
global batch: ``helpers.ddp_reference`` says what that one process has to reproduce (averaged
gradients, the averaged mask count, BatchNorm per process with rank 0's statistics kept).
"""

from __future__ import annotations

import json
from pathlib import Path

from spike2former.training import TrainJob, evaluate
from tests.training.helpers import (
    assert_same_tensors,
    ddp_reference,
    quick_args,
    read_tensors,
    run_torchrun,
    state_of,
    write_shapes_dataset,
    write_small_model,
)

ITERS = 3


def test_two_gloo_processes_match_one_process(tmp_path: Path, one_thread: None) -> None:
    data = write_shapes_dataset(tmp_path / "data", train=4, val=3)
    model_file = write_small_model(tmp_path / "start.safetensors")
    run = tmp_path / "ddp"
    args = quick_args(model_file, data, run, ITERS, 1)
    result = run_torchrun(2, args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(run)  # rank 0 alone prints
    saved = json.loads((run / "config.json").read_text())
    assert (saved["processes"], saved["total_batch_size"]) == (2, 2)

    job = TrainJob.from_dict(saved["job"])
    expected = ddp_reference(model_file, job, world_size=2)
    assert_same_tensors(state_of(expected), read_tensors(run / "weights" / "last.safetensors"))
    # validation: 3 images split 2 + 1 over the processes, areas summed with all_reduce
    expected.config = expected.config.replace(test_size=saved["model"]["test_size"])
    scores = evaluate(expected, job.data.build(job.data.val_split))
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (val,) = [record for record in logged if record["event"] == "val"]
    assert (val["mIoU"], val["mAcc"], val["aAcc"]) == (scores.mIoU, scores.mAcc, scores.aAcc)
