"""Weight initialisations. Seeded, so the same request always starts from the same weights."""

from __future__ import annotations

import numpy as np

INITS = ("scaled_normal", "he", "xavier")


def initialise(layer_sizes: list[int], init: str, seed: int, dtype: str = "float64") -> dict[str, np.ndarray]:
    """W1..WL (n_l, n_{l-1}) and b1..bL (n_l, 1).

    The legacy RandomState stream is used on purpose: with seed 1 and `scaled_normal` it
    reproduces the original deeplearning.ai notebook's weights draw for draw.
    """
    rng = np.random.RandomState(seed)
    params: dict[str, np.ndarray] = {}
    for layer in range(1, len(layer_sizes)):
        n_prev, n = layer_sizes[layer - 1], layer_sizes[layer]
        draw = rng.randn(n, n_prev)
        if init == "scaled_normal":
            w = draw / np.sqrt(n_prev)
        elif init == "he":
            w = draw * np.sqrt(2.0 / n_prev)
        elif init == "xavier":
            w = draw * np.sqrt(2.0 / (n_prev + n))
        else:
            raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")
        params[f"W{layer}"] = w.astype(dtype)
        params[f"b{layer}"] = np.zeros((n, 1), dtype=dtype)
    return params
