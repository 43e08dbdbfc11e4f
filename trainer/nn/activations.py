"""Activations and their derivatives, written in terms of the layer's output A.

The backward step of a hidden layer only has A_l at hand (Z_l is never stored), so every
derivative is expressed through A: that keeps the state the chain moves between steps small.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LEAKY_SLOPE = 0.01

HIDDEN_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax")
ALL_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "softmax")


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0)


def leaky_relu(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, z * z.dtype.type(LEAKY_SLOPE))


def tanh(z: np.ndarray) -> np.ndarray:
    return np.tanh(z)


def sigmoid(z: np.ndarray) -> np.ndarray:
    # exp only ever sees -|z|, so it never overflows: a saturated unit gives 0 or 1, not NaN, and
    # small outputs keep their relative precision (e/(1+e), not 1 - something).
    e = np.exp(-np.abs(z))
    p = 1 / (1 + e)
    return np.where(z >= 0, p, e * p)


def softmax_columns(z: np.ndarray) -> np.ndarray:
    """Softmax over each column (one example per column), shifted by the column's max: no overflow."""
    e = np.exp(z - np.max(z, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def log_softmax_columns(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log softmax, softmax) over each column, from one shift and one exp."""
    shifted = z - np.max(z, axis=0, keepdims=True)
    e = np.exp(shifted)
    total = np.sum(e, axis=0, keepdims=True)
    return shifted - np.log(total), e / total


FORWARD: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": relu,
    "leaky_relu": leaky_relu,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "softmax": softmax_columns,
}


def derivative_from_output(name: str, a: np.ndarray) -> np.ndarray:
    """g'(Z) written with A = g(Z); valid for the hidden activations."""
    one = a.dtype.type(1)
    if name == "relu":
        return (a > 0).astype(a.dtype)
    if name == "leaky_relu":
        return np.where(a > 0, one, a.dtype.type(LEAKY_SLOPE))
    if name == "tanh":
        return one - a * a
    if name == "sigmoid":
        return a * (one - a)
    raise ValueError(f"activation {name!r} has no hidden-layer derivative")
