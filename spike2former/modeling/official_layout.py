"""The official implementation's buffer reinterpretations, reproduced on purpose.

Three places in the released Spike2Former code change a tensor's shape with ``reshape`` where a
``permute`` was meant. The result is not what the layer names suggest (a channel-first buffer read
as channel-last, a token-major block read as channel-major), but it is what every released
checkpoint was trained with, so official weights only work if the same reinterpretation happens.
They are all here, named after what they really do, so that no other module has to hide one.

All functions work per sample on a flattened batch (time steps folded into the batch), exactly like
the official code's ``reshape(t, b, ...)`` calls, which never mix samples.
"""

from __future__ import annotations

from torch import Tensor


def channels_first_buffer_as_channels_last(x: Tensor, height: int, width: int) -> Tensor:
    """Read a channel-first ``[N, C, H*W]`` or ``[N, C, H, W]`` buffer as ``[N, H, W, C]``.

    Used on the output of the pixel-decoder encoder FFN (``MS_MLP``) and on the DCN offset and
    modulation maps: the official code calls ``reshape(T, B, H, W, C)`` on channel-first data, which
    shuffles space and channels in a way that depends on H*W (and so on the input resolution).
    """
    return x.reshape(x.shape[0], height, width, -1)


def tokens_as_channels(x: Tensor) -> Tensor:
    """Read a token-major ``[N, Q, C]`` block as ``[N, C, Q]`` without transposing.

    The decoder FFN (``MSDA_FFN``) does this on its input: each sample's row-major Q x C block is
    reinterpreted as C rows of Q consecutive values before the 1x1 Conv1d.
    """
    n, q, c = x.shape
    return x.reshape(n, c, q)


def channels_as_tokens(x: Tensor) -> Tensor:
    """The decoder FFN's output reinterpretation: ``[N, C, Q]`` read back as ``[N, Q, C]``."""
    n, c, q = x.shape
    return x.reshape(n, q, c)
