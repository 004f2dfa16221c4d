"""``Predictor(compile=True)``: the same labels as eager execution, and eager execution where
compilation fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spike2former.inference import compiled as compiled_module
from spike2former.inference.predictor import Predictor
from tests.helpers import make_model, random_rgb, small_config


def test_compiled_predictions_equal_eager_ones() -> None:
    network = make_model(small_config())
    images = [random_rgb(seed=seed) for seed in (1, 2, 3)]
    eager = Predictor(network, device="cpu", imgsz=0)
    compiled = Predictor(network, device="cpu", imgsz=0, compile=True)
    expected = eager.predict(images, keep_scores=True)
    got = compiled.predict(images, keep_scores=True)
    assert compiled.compiled and compiled.compile_note is None
    assert not eager.compiled
    # The pass that compiled is timed as such, not as inference; the next one of the same batch
    # shape is inference.
    assert all("compile" in p.timings_ms and "inference" not in p.timings_ms for p in got)
    again = compiled.predict(images)
    assert all("inference" in p.timings_ms and "compile" not in p.timings_ms for p in again)
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(again, got, strict=True))
    for want, have in zip(expected, got, strict=True):
        # Compiled kernels round the last projections differently (a few ulp): labels may move
        # where classes tie, nowhere else.
        assert np.mean(want.labels == have.labels) > 0.99
        torch.testing.assert_close(have.scores, want.scores, rtol=1e-4, atol=1e-5)


def test_failed_compilation_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(module: torch.nn.Module, **_: object):  # noqa: ANN202 - stands for torch.compile
        def fail(batch: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

        return fail

    monkeypatch.setattr(compiled_module.torch, "compile", no_compiler)
    network = make_model(small_config())
    images = [random_rgb(seed=5)]
    predictor = Predictor(network, device="cpu", imgsz=0, compile=True)
    assert predictor.compiled  # not tried yet
    labels = predictor.predict(images)[0].labels
    assert not predictor.compiled
    assert predictor.compile_note is not None
    assert "No working C++ compiler found" in predictor.compile_note
    assert "\n" not in predictor.compile_note
    expected = Predictor(network, device="cpu", imgsz=0).predict(images)[0].labels
    assert np.array_equal(labels, expected)
    predictor.predict(images)  # stays eager, no second attempt
    assert not predictor.compiled
