"""Semantic segmentation of whole images, as the official predict path, with timings.

The network itself stays free of pre- and post-processing; this module resizes, normalises,
batches same-sized images, runs the (fused) network and resizes the class scores back.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..datasets.metadata import palette_for
from ..modeling.fusion import optimize_for_inference
from ..modeling.spike2former import Spike2Former
from .compiled import CompiledScores, SemanticScores
from .devices import PlacedRunner
from .memory import (
    COARSE_BYTES_PER_PIXEL,
    DEFAULT_MAX_MEMORY,
    MemoryBudget,
    MemoryLimitError,
    network_peak_per_pixel,
)
from .preprocess import network_input_size, normalize, resize_image

# Pixels interpolated at once where neighbouring source pixels disagree: bounds the memory.
_PIXEL_CHUNK = 16384


@dataclass
class Prediction:
    """One image's result. ``labels`` is ``[H, W]`` at the input size (uint8, or uint16 for
    more than 256 classes); ``scores`` (only when asked for) is ``[K, h, w]`` float32 at the
    network input size ``network_size``. ``timings_ms`` has ``preprocess``, ``postprocess`` and
    ``inference``, or instead of ``inference`` ``compile`` for a pass that compiled the network
    (its share of that pass)."""

    labels: np.ndarray
    network_size: tuple[int, int]
    timings_ms: dict[str, float] = field(default_factory=dict)
    scores: Tensor | None = None

    def class_fractions(self) -> dict[int, float]:
        """Fraction of the image's pixels per class present, largest first."""
        counts = np.bincount(self.labels.ravel())
        present = np.flatnonzero(counts)
        total = self.labels.size
        order = present[np.argsort(-counts[present], kind="stable")]
        return {int(c): float(counts[c] / total) for c in order}


class Predictor(PlacedRunner):
    """Runs a Spike2Former model on RGB images.

    Args:
        model: the network (left untouched: the predictor runs a copy, fused when ``optimize``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``fp64``; falls back to fp32 where the device
            cannot (``precision_note`` says so).
        imgsz: short side fed to the network (default: the model's test size); 0 = native size.
        optimize: use ``optimize_for_inference`` (same function, different float rounding).
        compile: run through ``torch.compile`` (see ``compiled``): faster for inputs of one size,
            slow to start; falls back to eager execution where it cannot compile
            (``compile_note`` says so).
        max_memory: bytes of host memory one forward pass may take (``None``: what the machine
            has free); inputs that would need more are refused (``check_fits``).
    """

    def __init__(
        self,
        model: Spike2Former,
        device: str = "auto",
        precision: str = "fp32",
        imgsz: int | None = None,
        optimize: bool = True,
        compile: bool = False,
        max_memory: float | None = DEFAULT_MAX_MEMORY,
    ) -> None:
        config = model.config
        super().__init__(config.test_size, device, precision, imgsz, max_memory)
        network = optimize_for_inference(model) if optimize else copy.deepcopy(model).eval()
        self.model = network.to(device=self.device, dtype=self.dtype)
        scores = SemanticScores(self.model)
        self._eager_scores = scores
        self._scores = CompiledScores(scores) if compile else scores
        self._peak_per_pixel: float | None = None
        self.num_classes = config.head.num_classes
        self.class_names = config.class_names or tuple(
            f"class {i}" for i in range(self.num_classes)
        )
        self.palette = (
            list(config.palette)
            if config.palette is not None
            else palette_for(config.class_names, self.num_classes)
        )

    @property
    def compiled(self) -> bool:
        """True while the network runs compiled (asked for, and compilation has not failed)."""
        return isinstance(self._scores, CompiledScores) and self._scores.active

    @property
    def compile_note(self) -> str | None:
        """Why compilation was given up, if it was."""
        return self._scores.note if isinstance(self._scores, CompiledScores) else None

    def check_fits(self, height: int, width: int, count: int = 1) -> None:
        """Raise ``MemoryLimitError`` when ``count`` images of ``height x width`` segmented in
        one pass would need more memory than ``max_memory`` and the machine allow (see
        ``inference.memory``)."""
        net_h, net_w = network_input_size(height, width, self.imgsz)
        budget = MemoryBudget.now(self.device, self.max_memory)
        need = budget.need(COARSE_BYTES_PER_PIXEL, net_h * net_w * count, height * width * count)
        if budget.allows(need):
            return
        if self._peak_per_pixel is None:
            self._peak_per_pixel = network_peak_per_pixel(
                self._eager_scores, self.dtype, self.device
            )
        need = budget.need(self._peak_per_pixel, net_h * net_w * count, height * width * count)
        if budget.allows(need):
            return
        size = "its native size" if self.imgsz <= 0 else f"imgsz {self.imgsz}"
        what = f"{count} images of {height}x{width}" if count > 1 else f"a {height}x{width} image"
        raise MemoryLimitError(
            f"{what} at {size} ({net_h}x{net_w} into the network) needs about "
            f"{budget.shortfall(need)}; segment it at a smaller imgsz"
            + (" or batch size" if count > 1 else "")
            + (", or raise max_memory" if budget.capped_by_user(need) else "")
        )

    def _check_batch(self, images: Sequence[np.ndarray]) -> None:
        """``check_fits`` for each group of images that will share a forward pass, before any
        of them is resized or normalised."""
        shapes: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for image in images:
            height, width = image.shape[:2]
            size = network_input_size(height, width, self.imgsz)
            shapes.setdefault(size, []).append((height, width))
        for group in shapes.values():
            height, width = max(group, key=lambda shape: shape[0] * shape[1])
            self.check_fits(height, width, len(group))

    @torch.inference_mode()
    def predict(self, images: Sequence[np.ndarray], keep_scores: bool = False) -> list[Prediction]:
        """``HxWx3`` uint8 RGB images -> predictions; same-sized images share a forward pass."""
        self._check_batch(images)
        results: list[Prediction | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[tuple[int, Tensor, float]]] = {}
        for index, image in enumerate(images):
            start = time.perf_counter()
            resized = resize_image(image, self.imgsz)
            tensor = normalize(resized, self.dtype)
            groups.setdefault(tuple(tensor.shape[-2:]), []).append(
                (index, tensor, 1000 * (time.perf_counter() - start))
            )
        for size, members in groups.items():
            batch = torch.stack([tensor for _, tensor, _ in members]).to(self.device)
            start = time.perf_counter()
            scores = self.semantic_scores(batch)
            inference_ms = 1000 * (time.perf_counter() - start) / len(members)
            compiled_now = isinstance(self._scores, CompiledScores) and (
                self._scores.compiled_last_call
            )
            for row, (index, _, preprocess_ms) in enumerate(members):
                start = time.perf_counter()
                height, width = images[index].shape[:2]
                labels = scores_to_labels(scores[row], (height, width))
                results[index] = Prediction(
                    labels=labels.cpu().numpy().astype(label_dtype(self.num_classes)),
                    network_size=size,
                    scores=scores[row].float().cpu() if keep_scores else None,
                    timings_ms={
                        "preprocess": preprocess_ms,
                        "compile" if compiled_now else "inference": inference_ms,
                        "postprocess": 1000 * (time.perf_counter() - start),
                    },
                )
        return [r for r in results if r is not None]

    @torch.inference_mode()
    def semantic_scores(self, batch: Tensor) -> Tensor:
        """Normalised ``[B, 3, h, w]`` -> per-class scores ``[B, K, h, w]`` (official predict)."""
        return self._scores(batch.to(device=self.device, dtype=self.dtype))


def label_dtype(num_classes: int) -> type[np.unsignedinteger]:
    return np.uint8 if num_classes <= 256 else np.uint16


def scores_to_labels(scores: Tensor, size: tuple[int, int]) -> Tensor:
    """``[K, h, w]`` scores -> ``[H, W]`` arg-max after bilinear resizing to ``size``.

    Bilinear resizing (``align_corners=False``) makes every pixel a convex combination of at most
    four source pixels, and where those four share their arg-max class the combination has it
    too. So the labels are read off the source arg-max, and only pixels between source pixels of
    different classes are interpolated (all K scores, a chunk of pixels at a time): the same
    labels as resizing every class map, (near-)ties apart, without K full-size score maps.
    """
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores.argmax(0)
    # fp16/bf16 scores are interpolated in fp32; fp32 and fp64 keep their precision.
    dtype = torch.promote_types(scores.dtype, torch.float32)
    rows = _BilinearTaps.between(scores.shape[-2], size[0], dtype, scores.device)
    cols = _BilinearTaps.between(scores.shape[-1], size[1], dtype, scores.device)
    source = scores.argmax(0)
    labels = source[rows.first[:, None], cols.first[None, :]]
    mixed = labels != source[rows.first[:, None], cols.second[None, :]]
    mixed |= labels != source[rows.second[:, None], cols.first[None, :]]
    mixed |= labels != source[rows.second[:, None], cols.second[None, :]]
    ys, xs = mixed.nonzero(as_tuple=True)
    pixels = scores.permute(1, 2, 0)  # [h, w, K]: contiguous for channels-last scores
    for start in range(0, len(ys), _PIXEL_CHUNK):
        y, x = ys[start : start + _PIXEL_CHUNK], xs[start : start + _PIXEL_CHUNK]
        y0, y1, x0, x1 = rows.first[y], rows.second[y], cols.first[x], cols.second[x]
        wx0, wx1 = cols.first_weight[x, None], cols.second_weight[x, None]
        top = pixels[y0, x0].to(dtype) * wx0 + pixels[y0, x1].to(dtype) * wx1
        bottom = pixels[y1, x0].to(dtype) * wx0 + pixels[y1, x1].to(dtype) * wx1
        resized = top * rows.first_weight[y, None] + bottom * rows.second_weight[y, None]
        labels[y, x] = resized.argmax(1)
    return labels


@dataclass(frozen=True)
class _BilinearTaps:
    """Source indices and weights of a 1-D bilinear resize (``align_corners=False``)."""

    first: Tensor
    second: Tensor
    first_weight: Tensor
    second_weight: Tensor

    @classmethod
    def between(
        cls, in_size: int, out_size: int, dtype: torch.dtype, device: torch.device
    ) -> _BilinearTaps:
        position = (torch.arange(out_size, dtype=torch.float64) + 0.5) * (in_size / out_size)
        position = (position - 0.5).clamp_(min=0)
        first = position.floor()
        second_weight = position - first
        first = first.long()
        second = torch.clamp(first + 1, max=in_size - 1)
        return cls(
            first.to(device),
            second.to(device),
            (1 - second_weight).to(device, dtype),
            second_weight.to(device, dtype),
        )
