"""The parts of the network that firing rates and energy are reported by.

Backbone stages follow the official module names (the number after ``downsample`` /
``ConvBlock`` / ``block``), which is also the SDT-V2/V3 papers' stage numbering: stage 1 is
``downsample1_1``, ``ConvBlock1_1``, ``downsample1_2`` and ``ConvBlock1_2`` (strides 2 and 4),
stage 2 ``downsample2`` and ``ConvBlock2_*`` (stride 8), stage 3 ``downsample3`` and ``block3``
and stage 4 ``downsample4`` and ``block4`` (both stride 16). The head splits into the pixel decoder,
the transformer decoder and the spike-driven mask embedding (everything else under
``decode_head``: the SME neurons, ``cls_embed``, ``mask_embed``, the query shortcut and the mask
product).
"""

from __future__ import annotations

PARTS = (
    "backbone stage 1",
    "backbone stage 2",
    "backbone stage 3",
    "backbone stage 4",
    "pixel decoder",
    "transformer decoder",
    "mask embedding",
)
OTHER = "other"

_BACKBONE_STAGE = {
    "downsample1_1": 1,
    "ConvBlock1_1": 1,
    "downsample1_2": 1,
    "ConvBlock1_2": 1,
    "downsample2": 2,
    "ConvBlock2_1": 2,
    "ConvBlock2_2": 2,
    "downsample3": 3,
    "block3": 3,
    "downsample4": 4,
    "block4": 4,
}


def network_part(name: str) -> str:
    """The part (one of ``PARTS``, else ``OTHER``) a dotted module name belongs to."""
    top, _, rest = name.partition(".")
    if top == "backbone":
        stage = _BACKBONE_STAGE.get(rest.partition(".")[0])
        return f"backbone stage {stage}" if stage else OTHER
    if top == "decode_head":
        child = rest.partition(".")[0]
        if child == "pixel_decoder":
            return "pixel decoder"
        if child == "transformer_decoder":
            return "transformer decoder"
        return "mask embedding"
    return OTHER


def part_order(part: str) -> int:
    """Sort key: the order of ``PARTS``, ``OTHER`` last."""
    return PARTS.index(part) if part in PARTS else len(PARTS)
