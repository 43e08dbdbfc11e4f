"""The validation split a sweep carves from the training set. Pure.

Selection must never see the test set: a sweep ranks its trials on examples taken out of the
training set (seeded, the same for every trial), and the test set is only scored for the report.
"""

from __future__ import annotations

import numpy as np

SPLIT_STREAM = 0x5EED  # keeps the split's random stream apart from the runs' (which use [seed, epoch])


class SplitError(ValueError):
    """The split cannot be made; the message says why."""


def validation_indices(examples: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the training examples held out for validation."""
    count = round(examples * fraction)
    if count < 1 or count >= examples:
        raise SplitError(
            f"validation_fraction {fraction} of {examples} training examples leaves "
            f"{count} for validation and {examples - count} for training; each needs at least one"
        )
    return np.sort(np.random.default_rng([seed, SPLIT_STREAM]).permutation(examples)[:count])


def carve(raw: dict[str, np.ndarray], indices: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the raw arrays with the held-out examples removed from the training set, the held-out
    examples as {"x", "y"}). The test set passes through untouched."""
    held = np.zeros(raw["train_set_x"].shape[0], dtype=bool)
    held[indices] = True
    y = np.asarray(raw["train_set_y"]).reshape(-1)
    train = {
        "train_set_x": raw["train_set_x"][~held],
        "train_set_y": y[~held],
        "test_set_x": raw["test_set_x"],
        "test_set_y": raw["test_set_y"],
    }
    return train, {"x": raw["train_set_x"][held], "y": y[held]}
