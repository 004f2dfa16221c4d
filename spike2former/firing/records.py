"""One line of a firing run's report: an input image (or video frame) and its own totals."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class ImageRecord:
    """One input: its status and, when measured, its own totals.

    ``input_index`` is the position of the input in the job (a video's frames share it); it puts
    the records of a run split over processes back in input order and is not reported.
    """

    path: str
    status: str = "ok"
    message: str = ""
    size: list[int] | None = None
    network_size: list[int] | None = None
    spikes: int | None = None
    outputs: int | None = None
    energy_mj: float | None = None
    conventional_mj: float | None = None
    time_ms: float | None = None
    input_index: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in asdict(self).items()
            if v is not None and v != "" and k != "input_index"
        }
