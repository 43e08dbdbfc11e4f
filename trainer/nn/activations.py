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


# scipy.special does the numerically stable pieces. It is imported on first use, not with the
# module: the import costs a few tenths of a second that a cold start would otherwise pay before
# the handler even runs (the first step pays it once; later calls find it in sys.modules).
def sigmoid(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit  # never overflows: a saturated unit gives exactly 0 or 1, not NaN

    return expit(z)


def softmax_columns(z: np.ndarray) -> np.ndarray:
    from scipy.special import softmax

    return softmax(z, axis=0)


def log_softmax_columns(z: np.ndarray) -> np.ndarray:
    from scipy.special import log_softmax

    return log_softmax(z, axis=0)


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
