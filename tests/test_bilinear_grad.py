"""The transpose of bilinear upsampling, against autograd through ``F.interpolate``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spike2former.bilinear_grad import bilinear_upsample_grad


@pytest.mark.parametrize(
    "low, high",
    [
        ((2, 3, 8, 8), (16, 16)),  # the 2x of mask logits to label size
        ((1, 2, 5, 7), (10, 14)),  # odd, non-square
        ((3, 1, 1, 4), (2, 8)),  # a single row: both borders at once
        ((1, 1, 6, 6), (13, 11)),  # not 2x: ATen's own backward
        ((1, 1, 6, 6), (12, 6)),  # 2x along one axis only: ATen's own backward
    ],
)
def test_equals_the_gradient_of_interpolate(low: tuple[int, ...], high: tuple[int, int]) -> None:
    torch.manual_seed(0)
    x = torch.randn(low, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(*low[:2], *high, dtype=torch.float64)
    y = F.interpolate(x, size=high, mode="bilinear", align_corners=False)
    (expected,) = torch.autograd.grad(y, x, grad)
    got = bilinear_upsample_grad(grad, low)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_float32_differs_by_rounding_only() -> None:
    torch.manual_seed(1)
    x = torch.randn(4, 1, 32, 32, requires_grad=True)
    grad = torch.randn(4, 1, 64, 64)
    y = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    (expected,) = torch.autograd.grad(y, x, grad)
    torch.testing.assert_close(bilinear_upsample_grad(grad, x.shape), expected)
