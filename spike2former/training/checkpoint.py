"""Run folders and resumable checkpoints.

A run folder::

    RUN/config.json                      the resolved run: model config, recipe, data, processes
    RUN/metrics.jsonl                    one JSON object per log line and per validation
    RUN/weights/last.safetensors         the latest checkpoint's model file
    RUN/weights/best.safetensors         the model file with the best validation mIoU so far
    RUN/checkpoint/state.pt              optimiser, scheduler, iteration, RNG states, best mIoU,
                                         and the name of the weights it belongs to
    RUN/checkpoint/iter_NNNNNNNN.safetensors   those weights

Every file appears whole or not at all (written to a temporary name, flushed, renamed), and a
checkpoint is written in an order that leaves a consistent pair at every instant, whenever the
process is killed (``kill -9`` included):

1. the weights, ``checkpoint/iter_N.safetensors``;
2. ``state.pt``, naming them: from this rename on, a resume starts at iteration N;
3. ``weights/last.safetensors`` (a hard link to the same file where the file system allows);
4. the previous ``iter_*.safetensors``, no longer named by ``state.pt``, are deleted.

``state.pt`` holds plain tensors and Python numbers only and is read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_atomically
from ..errors import CheckpointError, OutputError, S2FError
from ..model_file import load_model, save_model
from ..modeling.spike2former import Spike2Former

STATE_VERSION = 1


class RunFolderError(S2FError):
    """A run folder cannot be started or resumed as asked (a usage error)."""


@dataclass
class TrainState:
    """Everything besides the weights that a resumed run needs."""

    iteration: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    best_miou: float | None = None  # the best validation score (top-1 in pretraining)
    best_iteration: int | None = None
    scaler: dict[str, Any] | None = None


class RunFolder:
    """The files of one training run (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.metrics = self.root / "metrics.jsonl"
        self.weights = self.root / "weights"
        self.last = self.weights / "last.safetensors"
        self.best = self.weights / "best.safetensors"
        self.checkpoints = self.root / "checkpoint"
        self.state = self.checkpoints / "state.pt"
        self.saved_iteration: int | None = None  # of the last checkpoint this object wrote
        self._made: Path | None = None  # the outermost folder ``create`` made

    def create(self, made_by_caller: bool = False) -> None:
        """Start a new run here; an existing, non-empty folder is refused, never overwritten.
        ``made_by_caller``: the (empty) folder was made for this run, and ``discard`` may
        remove it."""
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            raise RunFolderError(
                f"{self.root} already exists; pass {{resume}} to continue that run, or choose "
                "another run folder",
                resume=True,
            )
        missing = [folder for folder in (self.root, *self.root.parents) if not folder.exists()]
        self._made = self.root if made_by_caller else (missing[-1] if missing else None)
        try:
            self.weights.mkdir(parents=True, exist_ok=True)
            self.checkpoints.mkdir(exist_ok=True)
        except OSError as exc:
            self.discard()
            raise OutputError(f"{self.root}: cannot create the run folder ({exc})") from None

    def holds_progress(self) -> bool:
        """Whether the run wrote anything worth resuming or keeping: a checkpoint past
        iteration 0 (``state.pt`` of the start is the starting network) or best weights."""
        return (self.saved_iteration or 0) > 0 or self.best.exists()

    def discard(self) -> None:
        """Remove what ``create`` and the run wrote: the folders ``create`` made, or, in a
        folder that existed before, the run's own files and folders (the folder stays)."""
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)
            return
        for path in (self.config, self.metrics):
            path.unlink(missing_ok=True)
        for folder in (self.weights, self.checkpoints):
            shutil.rmtree(folder, ignore_errors=True)

    def check_resumable(self) -> None:
        """Raise ``RunFolderError`` unless this folder holds a run with a checkpoint."""
        if not self.root.is_dir():
            raise RunFolderError(f"{{resume}}: there is no run at {self.root}", resume=True)
        if not self.config.is_file() or not self.state.is_file():
            raise RunFolderError(
                f"{{resume}}: {self.root} has no checkpoint to resume from (no "
                f"{self.config.name} or {self.state.relative_to(self.root)}); start a new run",
                resume=True,
            )

    # -- the resolved configuration -------------------------------------------------------

    def write_config(self, config: dict[str, Any]) -> None:
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        write_atomically(self.config, lambda tmp: Path(tmp).write_text(text))

    def read_config(self) -> dict[str, Any]:
        try:
            return json.loads(self.config.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.config}: unreadable run configuration ({exc})") from None

    # -- metrics.jsonl --------------------------------------------------------------------

    def append_metrics(self, record: dict[str, Any]) -> None:
        line = json.dumps(_finite(record), sort_keys=False) + "\n"
        try:
            with open(self.metrics, "a", encoding="utf-8") as file:
                file.write(line)
                file.flush()
        except OSError as exc:
            raise OutputError(f"{self.metrics}: cannot write the file ({exc})") from None

    def truncate_metrics(self, iteration: int) -> None:
        """Keep the lines of iterations up to ``iteration`` (a resumed run logs the rest again),
        dropping a line cut short by a kill."""
        if not self.metrics.is_file():
            return
        kept = []
        for line in self.metrics.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("iter", 0) <= iteration:
                kept.append(line + "\n")
        text = "".join(kept)
        write_atomically(self.metrics, lambda tmp: Path(tmp).write_text(text))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line]

    # -- checkpoints ----------------------------------------------------------------------

    def weights_for(self, iteration: int) -> Path:
        return self.checkpoints / f"iter_{iteration:08d}.safetensors"

    def save_checkpoint(self, model: Spike2Former, state: TrainState) -> None:
        """Write the checkpoint of ``state.iteration`` in the crash-safe order."""
        weights = self.weights_for(state.iteration)
        self.write_weights(model, weights)
        _fsync(weights)
        payload = {
            "version": STATE_VERSION,
            "weights": weights.name,
            "iteration": state.iteration,
            "optimizer": state.optimizer,
            "scheduler": state.scheduler,
            "rng": state.rng,
            "best_miou": state.best_miou,
            "best_iteration": state.best_iteration,
            "scaler": state.scaler,
        }

        def write_state(tmp: str) -> None:
            with open(tmp, "wb") as file:
                try:
                    torch.save(payload, file)
                except RuntimeError as exc:  # torch's writer reports a full disk as these
                    raise OSError(" ".join(str(exc).split())) from None
                file.flush()
                os.fsync(file.fileno())

        write_atomically(self.state, write_state)
        self.saved_iteration = state.iteration
        _fsync_dir(self.checkpoints)
        self._publish_last(weights)
        self._remove_stale(keep=weights)

    def load_checkpoint(self, device: torch.device) -> tuple[Spike2Former, TrainState]:
        """The model and state of the last complete checkpoint (read only; see ``tidy``)."""
        try:
            payload = torch.load(self.state, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable state is one failure
            raise CheckpointError(f"{self.state}: unreadable training state ({exc})") from None
        if payload.get("version") != STATE_VERSION:
            raise CheckpointError(f"{self.state}: unknown state version {payload.get('version')}")
        weights = self.checkpoints / payload["weights"]
        if weights != self.weights_for(int(payload["iteration"])):
            raise CheckpointError(f"{self.state}: names {weights.name}, not its iteration's file")
        model = self.read_weights(weights, device).train()
        state = TrainState(
            iteration=int(payload["iteration"]),
            optimizer=payload["optimizer"],
            scheduler=payload["scheduler"],
            rng=payload["rng"],
            best_miou=payload["best_miou"],
            best_iteration=payload["best_iteration"],
            scaler=payload["scaler"],
        )
        return model, state

    def tidy(self, iteration: int) -> None:
        """After a kill: point ``last.safetensors`` at the checkpoint of ``iteration`` (the one
        ``state.pt`` names) and delete weights and temporary files no checkpoint needs. Run by
        one process only."""
        weights = self.weights_for(iteration)
        self._publish_last(weights)
        self._remove_stale(keep=weights)

    def save_best(self, model: Spike2Former) -> None:
        self.write_weights(model, self.best)

    def write_weights(self, model: Any, path: Path) -> None:
        """How this kind of run stores a network (a model file here)."""
        save_model(model, path)

    def read_weights(self, path: Path, device: torch.device) -> Any:
        """The inverse of ``write_weights``."""
        return load_model(path, device)

    def _publish_last(self, weights: Path) -> None:
        """``weights/last.safetensors`` := ``weights``, atomically."""

        def link_or_copy(tmp: str) -> None:
            os.unlink(tmp)
            try:
                os.link(weights, tmp)
            except OSError:
                shutil.copyfile(weights, tmp)

        write_atomically(self.last, link_or_copy)

    def _remove_stale(self, keep: Path) -> None:
        for path in self.checkpoints.glob("iter_*.safetensors"):
            if path.name != keep.name:
                path.unlink(missing_ok=True)
        for folder in (self.checkpoints, self.weights):
            for path in folder.glob(".*.tmp"):  # temporary files of a killed write
                path.unlink(missing_ok=True)


def capture_rng() -> dict[str, Any]:
    """Generator states of torch (CPU and CUDA), numpy and Python, as tensors and numbers."""
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": {
            "version": python_state[0],
            "state": list(python_state[1]),
            "gauss": python_state[2],
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync(path: Path) -> None:
    try:
        with open(path, "rb") as file:
            os.fsync(file.fileno())
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the file ({exc})") from None


def _fsync_dir(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _finite(record: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: undefined values become null."""
    return {
        key: (None if isinstance(value, float) and value != value else value)
        for key, value in record.items()
    }
