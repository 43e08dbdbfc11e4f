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
            b1, b2 = dtype(ADAM_BETA1), dtype(ADAM_BETA2)
            v = b1 * state[f"v{name}"] + (dtype(1) - b1) * grad
            s = b2 * state[f"s{name}"] + (dtype(1) - b2) * grad * grad
            v_hat = v / (dtype(1) - b1**step)
            s_hat = s / (dtype(1) - b2**step)
            new_state[f"v{name}"], new_state[f"s{name}"] = v, s
            new_params[name] = value - lr * v_hat / (np.sqrt(s_hat) + dtype(ADAM_EPSILON))
        else:
            raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
    return new_params, new_state
