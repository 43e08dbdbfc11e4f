"""Parameter updates for one layer. Pure: old parameters and state in, new ones out."""

from __future__ import annotations

import numpy as np

OPTIMIZERS = ("gd", "momentum", "adam")
MOMENTUM_BETA = 0.9
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8


def state_names(optimizer: str, layer: int) -> list[str]:
    """Names of the optimizer-state tensors a layer carries between steps."""
    if optimizer == "momentum":
        return [f"vW{layer}", f"vb{layer}"]
    if optimizer == "adam":
        return [f"vW{layer}", f"vb{layer}", f"sW{layer}", f"sb{layer}"]
    return []


def initial_state(optimizer: str, params: dict[str, np.ndarray], layers: int) -> dict[str, np.ndarray]:
    state: dict[str, np.ndarray] = {}
    for layer in range(1, layers + 1):
        for name in state_names(optimizer, layer):
            state[name] = np.zeros_like(params[name[1:]])
    return state


def update(
    optimizer: str,
    layer: int,
    params: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    state: dict[str, np.ndarray],
    learning_rate: float,
    step: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Return (new W/b of `layer`, new optimizer state of `layer`). `step` counts updates from 1."""
    new_params: dict[str, np.ndarray] = {}
    new_state: dict[str, np.ndarray] = {}
    for p in ("W", "b"):
        name = f"{p}{layer}"
        value, grad = params[name], grads[f"d{name}"]
        dtype = value.dtype.type
        lr = dtype(learning_rate)
        if optimizer == "gd":
            new_params[name] = value - lr * grad
        elif optimizer == "momentum":
            beta = dtype(MOMENTUM_BETA)
            v = beta * state[f"v{name}"] + (dtype(1) - beta) * grad
            new_state[f"v{name}"] = v
            new_params[name] = value - lr * v
        elif optimizer == "adam":
            new_params[name], new_state[f"v{name}"], new_state[f"s{name}"] = _adam(
                value, grad, state[f"v{name}"], state[f"s{name}"], lr, step
            )
        else:
            raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
    return new_params, new_state


def _adam(
    value: np.ndarray, grad: np.ndarray, v_old: np.ndarray, s_old: np.ndarray, lr: np.floating, step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Adam update: (new value, v, s). The expressions, operation by operation:

        v = b1 * v_old + (1 - b1) * grad
        s = b2 * s_old + (1 - b2) * grad * grad
        new = value - lr * (v / (1 - b1^step)) / (sqrt(s / (1 - b2^step)) + eps)

    evaluated into three fresh outputs and one scratch array instead of a temporary per operation
    (the inputs are never written): on a large layer the allocations cost more than the arithmetic.
    """
    dtype = value.dtype.type
    b1, b2, one = dtype(ADAM_BETA1), dtype(ADAM_BETA2), dtype(1)
    scratch = np.multiply(one - b1, grad)
    v = np.multiply(b1, v_old)
    v += scratch
    np.multiply(one - b2, grad, out=scratch)
    scratch *= grad
    s = np.multiply(b2, s_old)
    s += scratch
    np.divide(s, one - b2**step, out=scratch)
    np.sqrt(scratch, out=scratch)
    scratch += dtype(ADAM_EPSILON)
    new = np.divide(v, one - b1**step)
    np.multiply(lr, new, out=new)
    np.divide(new, scratch, out=new)
    np.subtract(value, new, out=new)
    return new, v, s
