"""Conversions from stored label ids to the training ids the models predict (255 = ignore)."""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255

# Official Cityscapes table (cityscapesscripts ``labels.py``): label id -> train id for the 19
# evaluated classes; every other id (unlabeled, ego vehicle, parking, rail track, guard rail,
# bridge, tunnel, polegroup, caravan, trailer, license plate, ...) is ignored.
CITYSCAPES_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    17: 5,  # pole
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """mmseg's ``reduce_zero_label``: 0 (unlabelled) -> 255, every other id -> id − 1, 255 stays.

    Used where id 0 means "no class" in the files (ADE20K, COCO-Stuff 10k).
    """
    reduced = label.astype(np.int64) - 1
    reduced[(label == 0) | (label == IGNORE_INDEX)] = IGNORE_INDEX
    return reduced.astype(label.dtype)


def cityscapes_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes ``*_gtFine_labelIds.png`` values -> the 19 train ids, everything else 255."""
    table = np.full(max(256, int(label_ids.max()) + 1), IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table[label_ids]
