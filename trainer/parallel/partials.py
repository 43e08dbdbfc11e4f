"""One micro-shard's share of a batch: its partial gradient, the sum of its examples' losses, and
how many of them its forward pass (the batch's parameters, before the step's update) classifies
right: the chain's training accuracy of a batch as it met it.

The forward and backward passes are the chain's own layer functions on the micro-shard's examples
alone. dJ/dZ is divided by the size of the whole batch (not the micro-shard's), so the partials add
up to the batch's gradient; L2 is added once, after the sum (`trainer.parallel.reference`).
"""

from __future__ import annotations

import numpy as np

from trainer.nn import layers, losses
from trainer.nn.activations import log_softmax_columns, sigmoid, softmax_columns
from trainer.parallel.flat import Layout


def loss_sum_and_gradient(output: str, z: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, np.ndarray]:
    """The sum (not the mean) of the examples' losses, and dJ/dZ of the batch's mean loss."""
    m = z.dtype.type(batch_size)
    if output == "sigmoid":
        return float(np.sum(np.logaddexp(0, z) - y * z)), (sigmoid(z) - y) / m
    if output == "softmax":
        onehot = losses.one_hot(y, z.shape[0], z.dtype)
        return float(-np.sum(onehot * log_softmax_columns(z))), (softmax_columns(z) - onehot) / m
    raise ValueError(f"output activation must be sigmoid or softmax, not {output!r}")


def micro_shard(
    layout: Layout,
    params: dict[str, np.ndarray],
    activations: tuple[str, ...] | list[str],
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """(flat partial gradient, [loss sum, hits] as float64) of the examples x (features, k), y (1, k).
    The hits are a count, exact in a float64: summed in the tree beside the loss sum, they are the
    same whoever adds them, in whatever order.

    `x` is laid out as the caller gathered it; gather it the same way whichever worker computes
    (`gather`), so that every product sees the same operands in the same layout."""
    grad = np.zeros(layout.size, dtype=dtype)
    if x.shape[1] == 0:
        return grad, np.zeros(2, dtype=np.float64)
    count = len(activations)
    acts = [x]
    for layer in range(1, count + 1):
        w, b = params[f"W{layer}"], params[f"b{layer}"]
        acts.append(layers.forward(acts[-1], w, b, activations[layer - 1], output=layer == count))
    cost, dz = loss_sum_and_gradient(activations[-1], acts[-1], y, batch_size)
    right = losses.hits(activations[-1], acts[-1], y)
    by_name = {s.name: s for s in layout.segments}
    for layer in range(count, 0, -1):
        w = params[f"W{layer}"]
        dw, db = by_name[f"W{layer}"], by_name[f"b{layer}"]
        grad[dw.start : dw.stop] = layers.weight_gradient(dz, acts[layer - 1]).reshape(-1)
        grad[db.start : db.stop] = np.sum(dz, axis=1)
        if layer > 1:
            dz = layers.hidden_dz(w.T @ dz, acts[layer - 1], activations[layer - 2])
    return grad, np.array([cost, right], dtype=np.float64)


def gather(x_held: np.ndarray, y_held: np.ndarray, first: int, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A micro-shard's examples from the slice of the training set a worker holds (its examples
    `first`, `first` + 1, ...), as a fresh examples-major array: the same layout whatever slice."""
    local = columns - first
    return np.asfortranarray(x_held[:, local]), np.ascontiguousarray(y_held[:, local])
