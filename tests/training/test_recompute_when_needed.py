"""The backbone is recomputed in backward when asked, and by default only where the training
step would not fit in memory otherwise (``preflight.check_memory``, ``train``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spike2former import load_model
from spike2former.errors import Note
from spike2former.training import (
    DataSpec,
    TrainJob,
    fit_model_to_data,
    preflight,
    recipe_for,
    train,
)
from spike2former.training.distributed import DistributedContext
from spike2former.training.lean import LeanTraining
from spike2former.training.memory import Images, Room, TrainingMemory
from spike2former.training.preflight import RunSettingsError, check_memory
from tests.training.helpers import write_shapes_dataset, write_small_model

GB = 1e9
IMAGES = Images(crop=32 * 32, train_image=32 * 32, val_image=0, val_input=0)


@pytest.fixture
def step_memory(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """A machine with ``free`` bytes where one image of the step takes ``kept`` bytes, or
    ``recomputed`` bytes with the backbone recomputed (every estimate measured, none coarse)."""
    sizes = {"free": 4 * GB, "kept": 3 * GB, "recomputed": 1 * GB}

    def measured(model: object, crop: object, images: Images, *, lean: LeanTraining,
                 **_: object) -> TrainingMemory:  # fmt: skip
        per_image = sizes["recomputed" if lean.recompute_backbone else "kept"]
        return TrainingMemory(fixed=0.0, per_image=per_image, validation=0.0, images=images,
                              on_device=False)  # fmt: skip

    def too_coarse(model: object, images: Images, device: object) -> TrainingMemory:
        return TrainingMemory(fixed=0.0, per_image=1e18, validation=0.0, images=images,
                              on_device=False)  # fmt: skip

    monkeypatch.setattr(preflight, "estimate", measured)
    monkeypatch.setattr(preflight, "coarse", too_coarse)
    monkeypatch.setattr(Room, "now", classmethod(lambda cls, device, n=1: cls(sizes["free"], None)))
    return sizes


def _check(batch: int, lean: LeanTraining, may_recompute: bool) -> LeanTraining:
    model = torch.nn.Linear(1, 1)
    recipe = recipe_for("tiny").replace(batch_size=batch, crop_size=(32, 32))
    return check_memory(
        model,
        recipe,
        IMAGES,
        DistributedContext(),
        0,
        lean,
        None,
        may_recompute,  # type: ignore[arg-type]
    )


def test_recomputing_is_chosen_only_where_the_step_does_not_fit(
    step_memory: dict[str, float],
) -> None:
    lean = LeanTraining()
    assert _check(1, lean, may_recompute=True) == lean  # fits as it is: nothing recomputed
    chosen = _check(2, lean, may_recompute=True)  # 6 GB kept, 2 GB recomputed, 4 GB free
    assert chosen == LeanTraining(recompute_backbone=True)
    with pytest.raises(RunSettingsError, match="at most 1 image"):
        _check(2, lean, may_recompute=False)  # switched off: refused, as before
    # too large even recomputed: refused with the advice for recomputing (at most 3 of 1 GB)
    with pytest.raises(RunSettingsError, match="at most 3 image"):
        _check(5, lean, may_recompute=True)


def test_asked_recomputation_is_kept_even_where_the_step_fits(
    step_memory: dict[str, float],
) -> None:
    asked = LeanTraining(recompute_backbone=True)
    assert _check(1, asked, may_recompute=False) == asked


class Notes:
    def __init__(self) -> None:
        self.notes: list[Note] = []

    def on_note(self, note: Note) -> None:
        self.notes.append(note)


def test_a_run_that_fits_only_recomputing_says_so_and_recomputes(
    tmp_path: Path, step_memory: dict[str, float]
) -> None:
    torch.set_num_threads(1)
    data = DataSpec.of("folder", write_shapes_dataset(tmp_path / "data", train=2, val=1, size=32))
    model, _ = fit_model_to_data(
        load_model(write_small_model(tmp_path / "start.safetensors")).train(), data, test_size=0
    )
    recipe = recipe_for("tiny").replace(
        iters=1, poly_end=1, warmup_iters=0, batch_size=2, crop_size=(32, 32),
        pipeline="random_crop", eval_interval=1, checkpoint_interval=1,
    )  # fmt: skip
    heard = Notes()
    result = train(model, TrainJob(recipe, data), tmp_path / "run", callbacks=heard)
    assert result.iteration == 1
    assert model.backbone.recompute_blocks
    [note] = heard.notes
    assert "recompute_backbone=True" in str(note)
    # asked not to recompute, the same run is refused before any folder exists
    with pytest.raises(RunSettingsError, match="batch"):
        train(model, TrainJob(recipe, data), tmp_path / "run2", recompute_backbone=False)
    assert not (tmp_path / "run2").exists()
