"""Input normalisation. Statistics come from the training set only and travel with the model."""

from __future__ import annotations

import numpy as np

NORMALIZATIONS = ("auto", "none", "minmax", "standardize")


def fit(method: str, x_train_raw: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics for `method` as arrays of shape (features, 1): x_norm = (x - shift) / scale."""
    n = x_train_raw.shape[1]
    x = x_train_raw.astype(np.float64)
    if method == "auto":
        if x_train_raw.dtype == np.uint8:
            return {"shift": np.zeros((n, 1)), "scale": np.full((n, 1), 255.0)}
        return {"shift": np.zeros((n, 1)), "scale": np.ones((n, 1))}
    if method == "none":
        return {"shift": np.zeros((n, 1)), "scale": np.ones((n, 1))}
    if method == "minmax":
        low, high = x.min(axis=0), x.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        return {"shift": low.reshape(n, 1), "scale": span.reshape(n, 1)}
    if method == "standardize":
        std = x.std(axis=0)
        return {"shift": x.mean(axis=0).reshape(n, 1), "scale": np.where(std > 0, std, 1.0).reshape(n, 1)}
    raise ValueError(f"unknown normalize {method!r}; expected one of {', '.join(NORMALIZATIONS)}")


def apply(stats: dict[str, np.ndarray], x_raw: np.ndarray, dtype: str) -> np.ndarray:
    """Examples-first raw data (m, features) to the network's column layout (features, m)."""
    x = x_raw.astype(np.float64).T
    return ((x - stats["shift"]) / stats["scale"]).astype(dtype)
