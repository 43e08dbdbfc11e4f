"""Input normalisation. Statistics come from the training set only and travel with the model."""

from __future__ import annotations

import numpy as np

NORMALIZATIONS = ("auto", "none", "minmax", "standardize")


def fit(method: str, x_train_raw: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics for `method` as arrays of shape (features, 1): x_norm = (x - shift) / scale."""
    n = x_train_raw.shape[1]
    if method == "auto":
        if x_train_raw.dtype == np.uint8:
            return {"shift": np.zeros((n, 1)), "scale": np.full((n, 1), 255.0)}
        return {"shift": np.zeros((n, 1)), "scale": np.ones((n, 1))}
    if method == "none":
        return {"shift": np.zeros((n, 1)), "scale": np.ones((n, 1))}
    x = x_train_raw.astype(np.float64)
    if method == "minmax":
        low, high = x.min(axis=0), x.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        return {"shift": low.reshape(n, 1), "scale": span.reshape(n, 1)}
    if method == "standardize":
        std = x.std(axis=0)
        return {"shift": x.mean(axis=0).reshape(n, 1), "scale": np.where(std > 0, std, 1.0).reshape(n, 1)}
    raise ValueError(f"unknown normalize {method!r}; expected one of {', '.join(NORMALIZATIONS)}")


CHUNK_EXAMPLES = 4096  # float64 working space per chunk: features x this many examples


def apply_columns(stats: dict[str, np.ndarray], x_raw_columns: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """Column-layout raw data (features, m) to the network's input, examples-major in memory
    (Fortran order). The arithmetic of every value is ((x as float64) - shift) / scale, then the
    cast to `dtype`, as one expression would do it; done a block of examples at a time, so the
    float64 working space stays small whatever the dtype and the size of the set."""
    features, m = x_raw_columns.shape
    # One transposing copy of the raw values (the narrow ones, when they are integers), so that
    # every block below reads and writes contiguous memory.
    x_raw_columns = np.asfortranarray(x_raw_columns)
    out = np.empty((features, m), dtype=dtype, order="F")
    shift, scale = stats["shift"], stats["scale"]
    in_place = out.dtype == np.float64  # the float64 result is its own working space
    block = None if in_place else np.empty((features, min(m, CHUNK_EXAMPLES)), dtype=np.float64, order="F")
    for start in range(0, m, CHUNK_EXAMPLES):
        stop = min(m, start + CHUNK_EXAMPLES)
        work = out[:, start:stop] if block is None else block[:, : stop - start]
        # The subtraction reads the raw values as float64 itself (an exact cast): one pass over
        # the block fewer than copying them in first, the same values.
        np.subtract(x_raw_columns[:, start:stop], shift, out=work, dtype=np.float64)
        np.divide(work, scale, out=work)
        if block is not None:
            out[:, start:stop] = work
    return out


def apply(stats: dict[str, np.ndarray], x_raw: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """Examples-first raw data (m, features) to the network's column layout (features, m)."""
    return apply_columns(stats, x_raw.T, dtype)
