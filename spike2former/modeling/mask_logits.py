"""Mask logits of every decoder stage, as the loss reads them.

The loss needs all mask logits only without gradient (the matching costs every query) and,
with gradient, only those of the queries matched to a ground-truth mask (a few per image).
``StageMaskLogits`` holds computed per-stage tensors; ``ProjectedMaskLogits`` holds what they
are computed from and computes each part when asked:

    masks[s, b, q] = mean over t of  E[s, n, q] . (W x[n] + c),   n = t * B + b

with E the spiked mask embedding, x the spiked stride-2 map, W and c the pixel decoder's final
1x1 convolution (``mask_feature``). Reassociated as ``(E W) . x + E . c`` the C x C projection of
the whole stride-2 map (the largest convolution of training) is never computed, and only the
matched queries' maps are computed with gradient. The values are those of the reference
computation up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor


class MaskLogits(Protocol):
    """Mask logits ``[S, B, Q, h, w]`` read two ways."""

    shape: torch.Size

    def detached(self, image: int, stage: int) -> Tensor:
        """All queries of one image at one stage, ``[Q, h, w]``, without gradient."""
        ...

    def matched(self, rows: Sequence[tuple[Tensor, Tensor]]) -> list[Tensor]:
        """Per stage s, the maps of ``(images, queries) = rows[s]``, ``[n_s, h, w]``."""
        ...


class StageMaskLogits:
    """Computed mask logits: one ``[B, Q, h, w]`` tensor per stage (or a stacked tensor)."""

    def __init__(self, stages: Sequence[Tensor] | Tensor) -> None:
        self.stages = list(stages.unbind(0) if isinstance(stages, Tensor) else stages)
        self.shape = torch.Size([len(self.stages), *self.stages[0].shape])

    def detached(self, image: int, stage: int) -> Tensor:
        return self.stages[stage][image].detach()

    def matched(self, rows: Sequence[tuple[Tensor, Tensor]]) -> list[Tensor]:
        return [
            stage[images, queries]
            for stage, (images, queries) in zip(self.stages, rows, strict=True)
        ]


class ProjectedMaskLogits:
    """Mask logits computed on demand from their factors (see the module docstring).

    ``embedding [S, N, Q, C]``, ``spikes [N, C, h, w]`` (any memory layout), ``weight [C, C]``
    and ``bias [C]`` of the 1x1 projection, N = ``time_steps`` * B.
    """

    def __init__(
        self, embedding: Tensor, spikes: Tensor, weight: Tensor, bias: Tensor, time_steps: int
    ) -> None:
        stages, n, queries, _ = embedding.shape
        self.time_steps = time_steps
        self.batch = n // time_steps
        self.shape = torch.Size([stages, self.batch, queries, *spikes.shape[-2:]])
        self.projected = embedding @ weight  # [S, N, Q, C]
        self.offsets = embedding @ bias  # [S, N, Q]
        # One view per sample: each is read once with gradient, so its gradient is not
        # scattered into a zero-filled copy of the whole map per use.
        self.pixels = [sample.flatten(1) for sample in spikes.unbind(0)]  # [C, h*w] each

    def _samples(self, image: int) -> range:
        """The batch rows ``t * B + image`` of one image, t = 0 .. T-1."""
        return range(image, image + self.time_steps * self.batch, self.batch)

    def _maps(self, image: int, projected: Tensor, offsets: Tensor) -> Tensor:
        """``projected [T, ..., C]`` rows and ``offsets [T, ...]`` of the image's samples ->
        maps ``[..., h*w]`` averaged over t."""
        maps = [
            rows @ self.pixels[n] + offset.unsqueeze(-1)
            for rows, offset, n in zip(projected, offsets, self._samples(image), strict=True)
        ]
        return maps[0] if len(maps) == 1 else torch.stack(maps).mean(0)

    def detached(self, image: int, stage: int) -> Tensor:
        with torch.no_grad():
            samples = self._samples(image)
            projected = torch.stack([self.projected[stage, n] for n in samples])
            offsets = torch.stack([self.offsets[stage, n] for n in samples])
            return self._maps(image, projected, offsets).view(self.shape[2:])

    def matched(self, rows: Sequence[tuple[Tensor, Tensor]]) -> list[Tensor]:
        height, width = self.shape[-2:]
        per_stage: list[list[Tensor]] = [[] for _ in rows]
        for image in range(self.batch):
            picks = [
                (stage, queries[images == image]) for stage, (images, queries) in enumerate(rows)
            ]
            projected = torch.stack(
                [
                    torch.cat([self.projected[s, n, q] for s, q in picks])
                    for n in self._samples(image)
                ]
            )
            offsets = torch.stack(
                [torch.cat([self.offsets[s, n, q] for s, q in picks]) for n in self._samples(image)]
            )
            maps = self._maps(image, projected, offsets).view(-1, height, width)
            sizes = [len(queries) for _, queries in picks]
            for (stage, _), part in zip(picks, maps.split(sizes), strict=True):
                per_stage[stage].append(part)
        return [torch.cat(parts) for parts in per_stage]
