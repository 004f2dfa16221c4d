"""The recipe table against architecture.md §6.4/§6.5, schedules fitted to other run lengths,
and recipe validation."""

from __future__ import annotations

import json

import pytest

from spike2former.presets import PRESETS
from spike2former.training.recipe import (
    RECIPES,
    RecipeError,
    TrainRecipe,
    recipe_for,
    recipe_name_for,
)

# preset: (batch per GPU, iters, poly end, crop, pipeline, class cost)
OFFICIAL = {
    "sdtv3b-ade20k": (12, 160_000, 160_000, (512, 512), "shortest_edge_a", 2.0),
    "sdtv2-ade20k": (6, 160_000, 160_000, (512, 512), "shortest_edge_a", 1.0),
    "sdtv3b-voc": (16, 160_000, 160_000, (512, 512), "random_resize", 2.0),
    "sdtv2-voc": (8, 120_000, 120_000, (512, 512), "random_resize", 1.0),
    "sdtv3b-cityscapes": (8, 90_000, 160_000, (512, 1024), "shortest_edge_c", 2.0),
    "sdtv2-cityscapes": (8, 90_000, 160_000, (512, 1024), "shortest_edge_c", 1.0),
    "sdtv2-cocostuff10k": (16, 160_000, 160_000, (512, 512), "shortest_edge_a", 1.0),
    "sdtv2-cocostuff164k": (16, 320_000, 320_000, (512, 512), "shortest_edge_a", 1.0),
}


def test_every_preset_has_a_recipe() -> None:
    assert set(RECIPES) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_recipes(name: str) -> None:
    recipe = recipe_for(name)
    batch, iters, end, crop, pipeline, cls_cost = OFFICIAL[name]
    got = (recipe.batch_size, recipe.iters, recipe.poly_end, recipe.crop_size, recipe.pipeline)
    assert got == (batch, iters, end, crop, pipeline)
    assert recipe.cls_cost == cls_cost
    # shared by every official config
    assert (recipe.weight_decay, recipe.betas, recipe.clip_grad) == (0.005, (0.9, 0.999), 0.01)
    assert (recipe.backbone_lr_mult, recipe.warmup_iters, recipe.warmup_factor) == (0.1, 1500, 1e-6)
    assert recipe.no_decay_keys == ("query_embed", "query_feat", "level_embed")
    assert (recipe.poly_power, recipe.min_lr, recipe.official_processes) == (1.0, 0.0, 8)
    assert recipe.checkpoint_interval == 10_000
    assert recipe.eval_interval == (5000 if name == "sdtv2-cocostuff164k" else 2500)
    if name == "sdtv3b-cityscapes":
        assert (recipe.lr, recipe.lr_base_batch) == (2e-3, 48)
    else:
        assert (recipe.lr, recipe.lr_base_batch) == (1e-3, None)


def test_json_round_trip() -> None:
    recipe = recipe_for("sdtv3b-cityscapes").with_iters(10).replace(clip_grad=None)
    assert TrainRecipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"iters": 0}, "iters=0 must be positive"),
        ({"warmup_iters": 4000}, "warmup_iters=4000 must be less than iters=4000"),
        ({"warmup_iters": 2000, "poly_end": 1000}, "poly_end=1000 must come after the warm-up"),
        ({"pipeline": "mosaic"}, "pipeline=.mosaic. must be one of"),
        ({"crop_size": (0, 512)}, "crop_size"),
        ({"clip_grad": -1.0}, "clip_grad"),
    ],
)
def test_invalid_recipes_say_what_is_wrong(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recipe_for("tiny").replace(**changes)


def test_unknown_names() -> None:
    with pytest.raises(KeyError, match="known recipes: .*sdtv3b-ade20k"):
        recipe_for("sdtv9")
    with pytest.raises(ValueError, match="unknown TrainRecipe fields: speed"):
        TrainRecipe.from_dict({"speed": 1})


def test_recipe_for_a_loaded_model() -> None:
    assert recipe_name_for(PRESETS["sdtv2-ade20k"], "cityscapes") == "sdtv2-cityscapes"
    assert recipe_name_for(PRESETS["sdtv3b-ade20k"], "cocostuff164k") == "sdtv3b-ade20k"
    assert recipe_name_for(PRESETS["sdtv2-voc"], "folder") == "sdtv2-ade20k"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_official_length_keeps_the_official_schedule(name: str) -> None:
    recipe = recipe_for(name)
    assert recipe.with_iters(recipe.iters) == recipe
    assert recipe.overridden(iters=recipe.iters) == recipe


def test_other_lengths_move_warm_up_and_decay_in_proportion() -> None:
    ade20k = recipe_for("sdtv3b-ade20k").with_iters(16_000)
    assert (ade20k.iters, ade20k.warmup_iters, ade20k.poly_end) == (16_000, 150, 16_000)
    cityscapes = recipe_for("sdtv2-cityscapes").with_iters(9_000)
    assert (cityscapes.iters, cityscapes.warmup_iters, cityscapes.poly_end) == (9_000, 150, 16_000)
    tiny = recipe_for("tiny")
    assert (tiny.with_iters(400).warmup_iters, tiny.with_iters(8000).warmup_iters) == (10, 200)
    # 20 of tiny's 4,000 iterations: its 100 warm-up iterations become 0.5, rounded to 0
    short = tiny.overridden(iters=20)
    assert (short.iters, short.warmup_iters, short.poly_end) == (20, 0, 20)


@pytest.mark.parametrize("iters", [1, 2, 3, 7, 150])
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_very_short_runs_end_their_warm_up_in_time(name: str, iters: int) -> None:
    recipe = recipe_for(name).with_iters(iters)
    assert recipe.iters == iters
    assert 0 <= recipe.warmup_iters < min(recipe.iters, recipe.poly_end)


def test_a_rounded_warm_up_still_ends_before_training() -> None:
    long_warm_up = recipe_for("tiny").replace(iters=100, poly_end=100, warmup_iters=60)
    assert long_warm_up.with_iters(1).warmup_iters == 0  # 0.6, rounded to 1, is all of it
    assert long_warm_up.with_iters(2).warmup_iters == 1


def test_command_line_overrides() -> None:
    recipe = recipe_for("sdtv3b-cityscapes").overridden(lr=1e-4, clip_grad=0, iters=9_000)
    assert (recipe.lr, recipe.lr_base_batch, recipe.clip_grad) == (1e-4, None, None)
    assert (recipe.iters, recipe.warmup_iters, recipe.poly_end) == (9_000, 150, 16_000)
    recipe = recipe_for("sdtv3b-ade20k").overridden(iters=100, warmup_iters=10, poly_end=500)
    assert (recipe.iters, recipe.warmup_iters, recipe.poly_end) == (100, 10, 500)


@pytest.mark.parametrize("warmup", [0, 1, 19])
def test_an_explicit_warm_up_is_kept(warmup: int) -> None:
    recipe = recipe_for("tiny").overridden(iters=20, warmup_iters=warmup)
    assert (recipe.iters, recipe.warmup_iters, recipe.poly_end) == (20, warmup, 20)
    assert recipe_for("tiny").overridden(warmup_iters=warmup).warmup_iters == warmup


def test_an_impossible_warm_up_names_its_fields_for_any_front_end() -> None:
    with pytest.raises(RecipeError) as caught:
        recipe_for("tiny").overridden(iters=20, warmup_iters=20)
    error = caught.value
    assert error.fields == {"warmup_iters": 20, "iters": 20}
    assert str(error).startswith("warmup_iters=20 must be less than iters=20")
    flags = error.describe(lambda name, value: f"--{name.replace('_', '-')} {value}")
    assert flags.startswith("--warmup-iters 20 must be less than --iters 20")
