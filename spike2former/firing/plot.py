"""A bar chart of per-layer firing rates, grouped and coloured by network part, as PNG bytes.

Drawn with Pillow (already a dependency; its built-in scalable font keeps labels legible) rather
than adding matplotlib for one chart: one horizontal bar per neuron layer, named, in network
order, under a coloured header per part, with the part's pooled rate as a dark line across its
bars.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from .monitor import LayerFiring, by_part
from .parts import OTHER, PARTS

COLOURS = {
    "backbone stage 1": (47, 75, 124),
    "backbone stage 2": (62, 111, 176),
    "backbone stage 3": (91, 155, 213),
    "backbone stage 4": (143, 188, 230),
    "pixel decoder": (242, 142, 43),
    "transformer decoder": (89, 161, 79),
    "mask embedding": (176, 122, 161),
    OTHER: (157, 157, 157),
}
_PREFIXES = {
    "pixel decoder": "decode_head.pixel_decoder.",
    "transformer decoder": "decode_head.transformer_decoder.",
    "mask embedding": "decode_head.",
}
_ROW, _HEADER, _MARGIN, _BAR_WIDTH = 16, 26, 24, 560
_INK, _GRID, _MUTED = (33, 33, 33), (225, 225, 225), (110, 110, 110)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _short_name(layer: LayerFiring) -> str:
    prefix = _PREFIXES.get(layer.part, "backbone.")
    return layer.name[len(prefix) :] if layer.name.startswith(prefix) else layer.name


def _tick_step(limit: float) -> float:
    return 0.05 if limit <= 0.3 else 0.1 if limit <= 0.6 else 0.2


def firing_rate_chart(layers: Sequence[LayerFiring], title: str, subtitle: str = "") -> bytes:
    """PNG bytes of a horizontal bar chart of ``layer.rate`` for every layer."""
    font, small, big = _font(12), _font(11), _font(16)
    groups: dict[str, list[LayerFiring]] = {}
    for layer in layers:
        groups.setdefault(layer.part, []).append(layer)
    parts = [p for p in (*PARTS, OTHER) if p in groups]
    pooled = {p.name: p for p in by_part(layers)}

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = max(
        [measure.textlength(_short_name(layer), font=font) for layer in layers] or [0]
    )
    label_width = int(label_width) + 16
    top_rate = max([layer.rate for layer in layers] or [0.0])
    limit = min(1.0, max(0.1, math.ceil(top_rate * 1.1 * 20) / 20))
    step = _tick_step(limit)

    legend_rows = math.ceil(len(parts) / 3)
    header_height = _MARGIN + 26 + (20 if subtitle else 0) + legend_rows * 20 + 34
    body_height = sum(_HEADER + _ROW * len(groups[p]) for p in parts)
    width = _MARGIN * 2 + label_width + _BAR_WIDTH + 170
    height = header_height + body_height + 34 + _MARGIN
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)

    y = _MARGIN
    draw.text((_MARGIN, y), title, fill=_INK, font=big)
    y += 26
    if subtitle:
        draw.text((_MARGIN, y), subtitle, fill=_MUTED, font=small)
        y += 20
    column = (width - 2 * _MARGIN) // 3
    for i, part in enumerate(parts):
        x = _MARGIN + (i % 3) * column
        row_y = y + (i // 3) * 20
        draw.rectangle((x, row_y + 2, x + 12, row_y + 14), fill=COLOURS[part])
        text = f"{part}  (mean rate {pooled[part].rate:.3f})"
        draw.text((x + 18, row_y), text, fill=_INK, font=small)
    y += legend_rows * 20 + 10

    x0 = _MARGIN + label_width
    scale = _BAR_WIDTH / limit
    ticks = [k * step for k in range(int(round(limit / step)) + 1)]
    axis_top, axis_bottom = y + 24, y + 24 + body_height

    def axis_labels(at: int) -> None:
        for tick in ticks:
            text = f"{tick:.2f}".rstrip("0").rstrip(".") if tick else "0"
            x = x0 + tick * scale
            draw.text(
                (x - measure.textlength(text, font=small) / 2, at), text, fill=_MUTED, font=small
            )

    axis_labels(y + 4)
    values_x = x0 + _BAR_WIDTH + 36
    draw.text((values_x, y + 4), "rate (count/D)", fill=_MUTED, font=small)

    # Row positions first: backgrounds, then grid lines, then bars and text on top.
    rows: list[tuple[str, int, int]] = []  # (part, y of the header, y after the last layer)
    y = axis_top
    for part in parts:
        rows.append((part, y, y + _HEADER + _ROW * len(groups[part])))
        y = rows[-1][2]
    for part, top, _ in rows:
        draw.rectangle(
            (_MARGIN, top + 4, width - _MARGIN, top + _HEADER - 4), fill=_tint(COLOURS[part])
        )
        for i in range(1, len(groups[part]), 2):
            row_y = top + _HEADER + i * _ROW
            draw.rectangle(
                (_MARGIN, row_y, width - _MARGIN, row_y + _ROW - 1), fill=(246, 246, 246)
            )
    for tick in ticks:
        x = x0 + tick * scale
        draw.line((x, axis_top, x, axis_bottom), fill=_GRID)

    for part, top, bottom in rows:
        colour, mean = COLOURS[part], pooled[part]
        header = f"{part}: {len(groups[part])} layers, pooled rate {mean.rate:.3f} (dashed line)"
        draw.text((_MARGIN + 6, top + 6), header, fill=_INK, font=font)
        row_y = top + _HEADER
        for layer in groups[part]:
            name = _short_name(layer)
            name_x = x0 - 8 - measure.textlength(name, font=font)
            draw.text((name_x, row_y + 1), name, fill=_INK, font=font)
            bar_end = x0 + layer.rate * scale
            draw.rectangle((x0, row_y + 3, max(x0 + 1, bar_end), row_y + _ROW - 3), fill=colour)
            value = f"{layer.rate:.3f}  ({layer.mean_count:.2f}/{layer.levels})"
            draw.text((values_x, row_y + 2), value, fill=_MUTED, font=small)
            row_y += _ROW
        draw.line((x0, top + _HEADER, x0, bottom), fill=_INK)
        mean_x = x0 + mean.rate * scale
        for dash in range(top + _HEADER, bottom, 6):
            draw.line((mean_x, dash, mean_x, min(dash + 3, bottom)), fill=_INK, width=2)
    axis_labels(axis_bottom + 4)
    caption = "rate = spikes per neuron per virtual time step (mean spike count / D)"
    draw.text((x0, axis_bottom + 20), caption, fill=_MUTED, font=small)

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _tint(colour: tuple[int, int, int], amount: float = 0.82) -> tuple[int, int, int]:
    """A pale version of ``colour`` for header bands."""
    return tuple(int(c + (255 - c) * amount) for c in colour)  # type: ignore[return-value]
