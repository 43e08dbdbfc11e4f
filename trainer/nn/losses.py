"""Losses computed from the output layer's pre-activation Z_L, in log-sum-exp form.

Working from Z (not from A = sigmoid(Z)) is what keeps the cost finite when a unit saturates:
log(sigmoid(z)) is -logaddexp(0, -z), never log(0).
"""

from __future__ import annotations

import numpy as np

from trainer.nn.activations import log_softmax_columns, sigmoid, softmax_columns


def one_hot(labels: np.ndarray, classes: int, dtype: np.dtype) -> np.ndarray:
    out = np.zeros((classes, labels.shape[-1]), dtype=dtype)
    out[labels.reshape(-1).astype(np.int64), np.arange(labels.shape[-1])] = 1
    return out


def binary_cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean BCE of sigmoid(z) against 0/1 labels y (1, m), and dJ/dZ."""
    m = z.shape[1]
    cost = float(np.sum(np.logaddexp(0, z) - y * z) / m)
    dz = (sigmoid(z) - y) / z.dtype.type(m)
    return cost, dz


def categorical_cross_entropy(z: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean CE of softmax(z) (K, m) against integer labels (1, m) in 0..K-1, and dJ/dZ."""
    k, m = z.shape
    y = one_hot(labels, k, z.dtype)
    cost = float(-np.sum(y * log_softmax_columns(z)) / m)
    dz = (softmax_columns(z) - y) / z.dtype.type(m)
    return cost, dz


def loss_and_gradient(output_activation: str, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    if output_activation == "sigmoid":
        return binary_cross_entropy(z, y)
    if output_activation == "softmax":
        return categorical_cross_entropy(z, y)
    raise ValueError(f"output activation must be sigmoid or softmax, not {output_activation!r}")


def predicted_classes(output_activation: str, z: np.ndarray) -> np.ndarray:
    """The predicted class (1, m) from the output layer's pre-activation."""
    if output_activation == "sigmoid":
        return (z > 0).astype(np.int64)  # sigmoid(z) > 0.5 exactly when z > 0
    return np.argmax(z, axis=0).reshape(1, -1)


def hits(output_activation: str, z: np.ndarray, y: np.ndarray) -> int:
    """How many of the examples (columns of z) are predicted as their label y (1, m)."""
    return int(np.sum(predicted_classes(output_activation, z) == y))
