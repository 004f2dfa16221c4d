"""Depthwise convolutions with the weight gradient summed in bands of rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spike2former import build_model
from spike2former.modeling import depthwise
from spike2former.modeling.depthwise import DepthwiseConv2d, depthwise_weight_grad
from spike2former.training.lean import OFFICIAL, LeanTraining, prepare_model


def _reference_grads(
    conv: DepthwiseConv2d, x: torch.Tensor, grad: torch.Tensor
) -> list[torch.Tensor]:
    """Gradients of input, weight and bias as ``F.conv2d``'s own backward computes them."""
    x = x.detach().requires_grad_(True)
    out = F.conv2d(x, conv.weight, conv.bias, padding=conv.padding, groups=conv.groups)
    wanted = [x, conv.weight] + ([conv.bias] if conv.bias is not None else [])
    return list(torch.autograd.grad(out, wanted, grad))


@pytest.mark.parametrize(
    "shape, kernel, bias, block_bytes",
    [
        ((2, 6, 9, 11), 5, False, 1 << 22),  # one band
        ((3, 4, 13, 8), 7, True, 512),  # bands of one row (the last band shorter)
        ((1, 5, 3, 4), 7, False, 600),  # kernel larger than the map
    ],
)
def test_blocked_gradients_equal_conv2d_backward(
    shape: tuple[int, ...],
    kernel: int,
    bias: bool,
    block_bytes: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(depthwise, "BLOCK_BYTES", block_bytes)
    torch.manual_seed(0)
    conv = DepthwiseConv2d(shape[1], kernel, bias=bias).double()
    conv.blocked_weight_grad = True
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(shape, dtype=torch.float64)
    out = conv(x)
    assert type(out.grad_fn).__name__ == "_DepthwiseConvBackward"
    expected_out = F.conv2d(x, conv.weight, conv.bias, padding=kernel // 2, groups=shape[1])
    torch.testing.assert_close(out, expected_out, rtol=0, atol=0)
    wanted = [x, conv.weight] + ([conv.bias] if bias else [])
    got = torch.autograd.grad(out, wanted, grad)
    for value, expected in zip(got, _reference_grads(conv, x, grad), strict=True):
        torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)


def test_weight_gradient_without_input_gradient() -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    grad = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    weight = torch.zeros(3, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    out = F.conv2d(x, weight, padding=2, groups=3)
    (expected,) = torch.autograd.grad(out, weight, grad)
    torch.testing.assert_close(depthwise_weight_grad(grad, x, 5), expected, rtol=1e-12, atol=1e-12)


def test_plain_conv2d_where_the_blocks_do_not_apply() -> None:
    conv = DepthwiseConv2d(4, 7)
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    assert type(conv(x).grad_fn).__name__ == "ConvolutionBackward0"  # switched off by default
    conv.blocked_weight_grad = True
    assert type(conv(x).grad_fn).__name__ == "_DepthwiseConvBackward"
    with torch.no_grad():
        assert conv(x).grad_fn is None
    assert type(DepthwiseConv2d(4, 3).forward(x).grad_fn).__name__ == "ConvolutionBackward0"
    small = DepthwiseConv2d(4, 3)
    small.blocked_weight_grad = True
    assert type(small(x).grad_fn).__name__ == "ConvolutionBackward0"  # 3x3: oneDNN's is fast


@pytest.mark.parametrize("preset", ["tiny", "sdtv2-ade20k"])
def test_lean_training_switches_every_large_depthwise_conv(preset: str) -> None:
    model = build_model(preset)
    large = [m for m in model.modules() if isinstance(m, DepthwiseConv2d) and m.kernel_size[0] >= 5]
    assert large, "the backbone's separable convolutions are depthwise 5x5 or 7x7"
    prepare_model(model, LeanTraining())
    assert all(m.blocked_weight_grad for m in large)
    prepare_model(model, OFFICIAL)
    assert not any(m.blocked_weight_grad for m in large)


def test_state_dict_keys_are_those_of_conv2d() -> None:
    conv = DepthwiseConv2d(4, 7, bias=True)
    plain = torch.nn.Conv2d(4, 4, 7, padding=3, groups=4, bias=True)
    assert conv.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(conv.state_dict())
