"""The recipe table against architecture.md §6.4/§6.5, and recipe validation."""

from __future__ import annotations

import json

import pytest

from spike2former.presets import PRESETS
from spike2former.training.recipe import (
    RECIPES,
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
    recipe = recipe_for("sdtv3b-cityscapes").replace(iters=10, clip_grad=None)
    assert TrainRecipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"iters": 0}, "iters must be positive"),
        ({"warmup_iters": 2000, "poly_end": 1000}, "must come after the warm-up"),
        ({"pipeline": "mosaic"}, "pipeline must be one of"),
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


def test_shorter_runs_shrink_the_decay_alike() -> None:
    assert recipe_for("sdtv3b-ade20k").with_iters(20_000).poly_end == 20_000
    cityscapes = recipe_for("sdtv2-cityscapes").with_iters(9_000)
    assert (cityscapes.iters, cityscapes.poly_end) == (9_000, 16_000)
    with pytest.raises(ValueError, match="shorten the warm-up"):
        recipe_for("sdtv3b-ade20k").with_iters(1000)  # all of it would be warm-up


def test_command_line_overrides() -> None:
    recipe = recipe_for("sdtv3b-cityscapes").overridden(lr=1e-4, clip_grad=0, iters=9_000)
    assert (recipe.lr, recipe.lr_base_batch, recipe.clip_grad) == (1e-4, None, None)
    assert (recipe.iters, recipe.poly_end) == (9_000, 16_000)
    recipe = recipe_for("sdtv3b-ade20k").overridden(iters=100, warmup_iters=10, poly_end=500)
    assert (recipe.iters, recipe.warmup_iters, recipe.poly_end) == (100, 10, 500)
