"""Dataset readers, augmentation pipelines and dataset metadata (class names, palettes).

``build_dataset(format, root, split)`` reads one of the supported layouts (``readers.py``);
``pipeline_for(name)`` gives the official training augmentation and ``eval_pipeline_for(name)``
the test-time resize (``transforms.py``); ``metadata.py`` holds class names and colours.
"""

from ..errors import DatasetError
from .base import SampleFiles, SegmentationDataset, SegmentationSample, Transform
from .metadata import DATASET_CLASSES, DATASET_PALETTES, generated_palette, palette_for
from .readers import FORMATS, build_dataset
from .transforms import eval_pipeline_for, pipeline_for

__all__ = [
    "DATASET_CLASSES",
    "DATASET_PALETTES",
    "FORMATS",
    "DatasetError",
    "SampleFiles",
    "SegmentationDataset",
    "SegmentationSample",
    "Transform",
    "build_dataset",
    "eval_pipeline_for",
    "generated_palette",
    "palette_for",
    "pipeline_for",
]
