"""Parameter groups and the learning-rate schedule against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from spike2former import build_model
from spike2former.training.optim import (
    WarmupPolyFactor,
    build_optimizer,
    build_scheduler,
    parameter_groups,
)
from spike2former.training.recipe import TrainRecipe, recipe_for
from tests.helpers import small_config


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_model(small_config())


def test_groups_follow_the_official_custom_keys(model: torch.nn.Module) -> None:
    recipe = recipe_for("sdtv3b-ade20k")
    groups = {group["name"]: group for group in parameter_groups(model, recipe)}
    assert set(groups) == {"backbone", "no_decay", "default"}
    assert groups["backbone"]["lr"] == pytest.approx(1e-4)
    assert groups["backbone"]["weight_decay"] == 0.005
    assert groups["no_decay"]["lr"] == 1e-3
    assert groups["no_decay"]["weight_decay"] == 0.0
    assert groups["default"]["lr"] == 1e-3
    assert groups["default"]["weight_decay"] == 0.005
    assert sorted(groups["no_decay"]["names"]) == [
        "decode_head.level_embed.weight",
        "decode_head.query_embed.weight",
        "decode_head.query_feat.weight",
    ]
    names = [name for name, _ in model.named_parameters()]
    assert sorted(groups["backbone"]["names"]) == sorted(n for n in names if "backbone" in n)
    # every parameter exactly once; BN weights, biases and gammas decay like the rest
    grouped = [n for g in groups.values() for n in g["names"]]
    assert sorted(grouped) == sorted(names)
    assert any("norm" in n or "bn" in n for n in groups["default"]["names"])


def test_optimizer_is_adamw_with_the_recipe(model: torch.nn.Module) -> None:
    recipe = recipe_for("sdtv2-ade20k")
    optimizer = build_optimizer(model, recipe, lr=2e-3)
    assert isinstance(optimizer, torch.optim.AdamW)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {"backbone": pytest.approx(2e-4), "no_decay": 2e-3, "default": 2e-3}
    assert all(g["betas"] == (0.9, 0.999) for g in optimizer.param_groups)


def schedule(recipe: TrainRecipe, iterations: list[int]) -> dict[int, float]:
    """The rate step t uses, read off a real optimizer and LambdaLR (stepped to t - 1)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"params": [param], "lr": recipe.lr, "name": "default"}])
    scheduler = build_scheduler(optimizer, recipe)
    seen = {0: optimizer.param_groups[0]["lr"]}
    optimizer.step()
    for t in sorted(set(iterations) - {0}):
        scheduler.last_epoch = t - 1  # as if stepped t - 1 times; step() moves to t
        scheduler.step()
        seen[t] = optimizer.param_groups[0]["lr"]
    return seen


def test_ade20k_schedule_at_key_iterations() -> None:
    recipe = recipe_for("sdtv3b-ade20k")  # lr 1e-3, warm-up 1500 from 1e-6, poly to 160k
    lr = schedule(recipe, [0, 1, 749, 1499, 1500, 1501, 80_000, 159_998, 159_999])
    assert lr[0] == pytest.approx(1e-3 * 1e-6, rel=1e-12)
    # LinearLR: factor 1e-6 + (1 - 1e-6) t / 1499, reaching 1 at its last step, 1499
    assert lr[1] == pytest.approx(1e-3 * (1e-6 + (1 - 1e-6) / 1499), rel=1e-12)
    assert lr[749] == pytest.approx(1e-3 * (1e-6 + (1 - 1e-6) * 749 / 1499), rel=1e-12)
    assert lr[1499] == pytest.approx(1e-3, rel=1e-12)
    # PolyLR (power 1) from 1500: (159999 - t) / 158499, 0 at its last step, 159999
    assert lr[1500] == pytest.approx(1e-3, rel=1e-12)
    assert lr[1501] == pytest.approx(1e-3 * 158_498 / 158_499, rel=1e-12)
    assert lr[80_000] == pytest.approx(1e-3 * 79_999 / 158_499, rel=1e-12)
    assert lr[159_998] == pytest.approx(1e-3 / 158_499, rel=1e-9)
    assert lr[159_999] == 0.0


def test_cityscapes_stops_before_the_poly_end() -> None:
    recipe = recipe_for("sdtv3b-cityscapes")
    assert (recipe.iters, recipe.poly_end) == (90_000, 160_000)
    assert recipe.scaled_lr(8 * 8) == pytest.approx(2e-3 * 64 / 48)
    factor = WarmupPolyFactor(1500, 1e-6, 160_000, 1.0)
    assert factor(89_999) == pytest.approx(70_000 / 158_499)  # ≈ 0.44 at the last iteration
    assert factor(200_000) == 0.0


def mmengine_chain(warmup: int, start: float, end: int, power: float, steps: int) -> list[float]:
    """mmengine's chained LinearLR + PolyLR updates (its ``_get_value`` formulas), for base 1."""
    lr, out = 1.0, []
    for step in range(steps):
        if step < warmup:
            total = warmup - 1
            if step == 0:
                lr = lr * start
            else:
                lr = lr * (1 + (1 - start) / (total * start + (step - 1) * (1 - start)))
        elif step < end:
            last, total = step - warmup, end - warmup - 1
            if last > 0:
                lr = lr * (1 - 1 / (total - last + 1)) ** power
        out.append(lr)
    return out


@pytest.mark.parametrize(("warmup", "end", "power"), [(5, 20, 1.0), (10, 40, 0.9), (1, 8, 1.0)])
def test_closed_form_matches_the_mmengine_chain(warmup: int, end: int, power: float) -> None:
    factor = WarmupPolyFactor(warmup, 1e-6, end, power)
    chain = mmengine_chain(warmup, 1e-6, end, power, end + 3)
    for step, expected in enumerate(chain):
        assert math.isclose(factor(step), expected, rel_tol=1e-9, abs_tol=1e-15), step


def test_min_lr_is_absolute_for_every_group(model: torch.nn.Module) -> None:
    recipe = recipe_for("tiny").replace(iters=10, poly_end=10, warmup_iters=0, min_lr=1e-5)
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe)
    for _ in range(9):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-5] * 3)
