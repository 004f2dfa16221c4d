"""Depthwise convolutions whose weight gradient is computed in cache-sized blocks.

On CPUs, oneDNN's weight gradient of a depthwise 5x5 or 7x7 convolution takes 10 to 20 times its
forward pass (a 2x256x64x64 map, 7x7: 4.7 ms forward, 72 ms weight gradient at one thread), and
these convolutions sit in every MetaFormer block of both backbones. The same gradient is k*k
products of the output gradient with a shifted input, each summed per channel; taken a band of
rows at a time (a few MiB, so that both operands stay in cache) it costs two to three times less.
The input gradient and the forward pass stay oneDNN's; 3x3 kernels keep oneDNN's weight gradient
too, which is fast enough there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLOCK_BYTES = 1 << 22  # one band of the output gradient: with the input's band, within L3
MIN_KERNEL = 5  # below this oneDNN's own weight gradient is as fast


def depthwise_weight_grad(grad: Tensor, x: Tensor, kernel_size: int) -> Tensor:
    """``d loss / d weight`` of a stride-1 depthwise conv with 'same' padding, ``[C, 1, k, k]``.

    ``grad`` is the gradient of the conv's output, ``x`` its input, both ``[N, C, H, W]``.
    """
    pad = kernel_size // 2
    n, channels, height, width = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    row_bytes = n * channels * width * grad.element_size()
    rows = max(1, min(height, BLOCK_BYTES // row_bytes))
    weight_grad = x.new_zeros(channels, kernel_size, kernel_size)
    for top in range(0, height, rows):
        band = grad[:, :, top : top + rows]
        band_rows = band.shape[2]
        window = padded[:, :, top : top + band_rows + 2 * pad]
        for i in range(kernel_size):
            for j in range(kernel_size):
                shifted = window[:, :, i : i + band_rows, j : j + width]
                weight_grad[:, i, j] += (band * shifted).sum((0, 2, 3))
    return weight_grad.unsqueeze(1)


class _DepthwiseConv(torch.autograd.Function):
    """Forward and input gradient as ``F.conv2d`` computes them; weight gradient in blocks."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        pad = weight.shape[-1] // 2
        return F.conv2d(x, weight, bias, padding=pad, groups=weight.shape[0])

    @staticmethod
    def backward(  # type: ignore[override]
        ctx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        kernel_size = weight.shape[-1]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            pad = kernel_size // 2
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], [pad, pad], [1, 1], False, [0, 0],
                weight.shape[0], [True, False, False],
            )[0]  # fmt: skip
        if ctx.needs_input_grad[1]:
            grad_weight = depthwise_weight_grad(grad, x, kernel_size)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` with ``groups == in == out channels`` (same parameters and state-dict keys).

    With ``blocked_weight_grad`` (set by ``training.lean.prepare_model``) a CPU training forward
    of a square kernel of at least 5, stride 1 and 'same' padding records ``_DepthwiseConv``;
    everything else is ``nn.Conv2d``'s own computation.
    """

    def __init__(self, channels: int, kernel_size: int, *, bias: bool = False) -> None:
        super().__init__(
            channels,
            channels,
            kernel_size,
            padding=(kernel_size - 1) // 2,
            groups=channels,
            bias=bias,
        )
        self.blocked_weight_grad = False

    def _blocks_apply(self, x: Tensor) -> bool:
        k = self.kernel_size
        return (
            self.blocked_weight_grad
            and torch.is_grad_enabled()
            and self.weight.requires_grad
            and x.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu")  # the blocks would sum in bf16
            and k[0] == k[1] >= MIN_KERNEL
            and k[0] % 2 == 1
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.padding == (k[0] // 2, k[0] // 2)
            and self.padding_mode == "zeros"
        )

    def forward(self, x: Tensor) -> Tensor:
        if self._blocks_apply(x):
            return _DepthwiseConv.apply(x, self.weight, self.bias)
        return super().forward(x)
