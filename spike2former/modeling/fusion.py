"""Inference-only rewrites of a trained network that compute the same function faster.

``optimize_for_inference`` returns a copy in which

- every BatchNorm is folded into the convolution before it (running statistics, so eval only);
- spiking attention computes ``q (k^T v)`` instead of ``(q k^T) v`` (no softmax, so the product
  is associative; N x d x d instead of N x N x d work);
- the pixel decoder's last 1x1 conv is applied to the Q mask embeddings instead of the C-channel
  stride-2 map;
- the T identical copies of the input are not run T times;
- the backbone's convolutional stages run channels-last (pixel-major);
- neurons whose input is a temporary nothing else reads spike it in place.

Folding and reassociation change float rounding, not the mathematics. In float64 the results agree
with the reference network to ~1e-12; in float32 a neuron input that lies within rounding of a
k + 0.5 boundary can round the other way (see README, "Speed").
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .backbone_sdtv2 import BNAndPad, RepConv
from .neuron import SpikingNeuron
from .spike2former import Spike2Former

_BatchNorm = (nn.BatchNorm1d, nn.BatchNorm2d)
_Conv = (nn.Conv1d, nn.Conv2d)


def optimize_for_inference(model: Spike2Former) -> Spike2Former:
    """A fused evaluation-mode copy of ``model`` (the original is left untouched)."""
    fast = copy.deepcopy(model).eval()
    with torch.no_grad():
        _fold_batchnorms(fast)
    for module in fast.modules():
        if hasattr(module, "keys_first"):
            module.keys_first = True
    fast.decode_head.late_mask_projection = True
    fast.backbone.pixel_major_convs = True
    _spike_temporaries_in_place(fast)
    fast.repeat_time_steps = False
    return fast


def _spike_temporaries_in_place(model: nn.Module) -> None:
    """Let the neurons each module lists in ``temporary_input_neurons`` overwrite their input."""
    for module in model.modules():
        for name in getattr(module, "temporary_input_neurons", ()):
            neurons = getattr(module, name)
            for neuron in neurons if isinstance(neurons, nn.ModuleList) else [neurons]:
                assert isinstance(neuron, SpikingNeuron)
                neuron.overwrites_input = True


def _fold_batchnorms(module: nn.Module) -> None:
    """Fold, innermost modules first, every BN that directly follows a convolution."""
    for child in module.children():
        _fold_batchnorms(child)
    if isinstance(module, RepConv):
        _fold_rep_conv(module)
    if isinstance(module, nn.Sequential):
        for i in range(1, len(module)):
            conv = _last_conv(module[i - 1])
            if isinstance(module[i], _BatchNorm) and conv is not None:
                _fold_into(conv, module[i])
                module[i] = nn.Identity()
    for conv_name, bn_name in getattr(module, "conv_bn_pairs", ()):
        _fold_into(getattr(module, conv_name), getattr(module, bn_name))
        setattr(module, bn_name, nn.Identity())


def _fold_rep_conv(rep: RepConv) -> None:
    """1x1 conv -> BN with a BN(0) border  ==  zero border -> 1x1 conv with BN folded in."""
    conv, bn_pad = rep.body[0], rep.body[1]
    assert isinstance(bn_pad, BNAndPad)
    _fold_into(conv, bn_pad.bn)
    rep.body[0], rep.body[1] = nn.ZeroPad2d(1), conv


def _last_conv(module: nn.Module) -> nn.Module | None:
    """The convolution whose output ``module`` returns, if its last operation is one."""
    if isinstance(module, _Conv):
        return module
    if isinstance(module, RepConv):
        return _last_conv(module.body)
    if isinstance(module, nn.Sequential):
        layers = [m for m in module if not isinstance(m, nn.Identity)]
        return _last_conv(layers[-1]) if layers else None
    return None


def _fold_into(conv: nn.Module, bn: nn.Module) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.view(-1, *[1] * (conv.weight.dim() - 1)))
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
