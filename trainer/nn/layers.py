"""One layer's forward step and one layer's backward step: each is its own state of the chain."""

from __future__ import annotations

import numpy as np

from trainer.nn.activations import FORWARD, derivative_from_output

# The shapes for which numpy's own orientation of W·A_prev is the faster (see `weighted`).
WIDE_LAYER = 16
LARGE_LAYER = 64


def weighted(w: np.ndarray, a_prev: np.ndarray) -> np.ndarray:
    """W·A_prev, row-major.

    Computed as (A_prev^T W^T)^T: the same product, but numpy then hands OpenBLAS the orientation
    in which a wide, narrow layer (the cat benchmark's first: 12288 features into 20 units) runs
    10-70% faster (tests/performance/breakdown.py measures both ways); the small (n_l, m) result is
    made row-major again so that every later step, and the chain's hand-offs, see the layout they
    always did. A large, squarer layer (an MNIST-shaped 784 -> 256 or 256 -> 128) runs faster as
    numpy orients it, markedly so in float32 on one thread, where the transposed form took three
    times as long over the finish's 4096-example prediction blocks. Small layers keep the
    transposed form, and with it the results they always had."""
    n_out, n_in = w.shape
    if n_out >= LARGE_LAYER and n_in < WIDE_LAYER * n_out:
        return w @ a_prev
    return np.ascontiguousarray((a_prev.T @ w.T).T)


def forward(a_prev: np.ndarray, w: np.ndarray, b: np.ndarray, activation: str, output: bool) -> np.ndarray:
    """Z = W·A_prev + b; a hidden layer returns A = g(Z), the output layer returns Z itself
    (the loss step works from Z for numerical stability)."""
    z = weighted(w, a_prev)
    z += b  # in place: the same sums, without a second (n_l, m) array
    return z if output else FORWARD[activation](z)


def hidden_dz(da: np.ndarray, a: np.ndarray, activation: str) -> np.ndarray:
    return da * derivative_from_output(activation, a)


def weight_gradient(dz: np.ndarray, a_prev: np.ndarray) -> np.ndarray:
    """dZ·A_prev^T (unscaled by L2). numpy's own orientation is the faster one for this product
    (tests/performance/breakdown.py measures the others)."""
    return dz @ a_prev.T


def backward(
    dz: np.ndarray, a_prev: np.ndarray, w: np.ndarray, l2: float, batch_size: int, need_da_prev: bool
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Gradients of W and b from dJ/dZ (already divided by the batch size), and dJ/dA_prev
    computed with the weights before their update."""
    dtype = w.dtype.type
    dw = weight_gradient(dz, a_prev)
    if l2:
        dw = dw + (dtype(l2) / dtype(batch_size)) * w
    db = np.sum(dz, axis=1, keepdims=True)
    da_prev = w.T @ dz if need_da_prev else None
    return {"dW": dw, "db": db}, da_prev


def l2_term(w: np.ndarray) -> float:
    return float(np.sum(np.square(w)))
