"""Parameter updates for one layer. Pure: old parameters and state in, new ones out.

One record per optimizer (`Optimizer`): its name, the state it keeps per parameter, its update, and
the memory that state costs. The request's choices, the memory model (trainer.nn.footprint) and
the table in trainer/README.md all read these records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

# The names a request may give: a type, so that the request's schema and a type checker see them.
OptimizerName = Literal["gd", "momentum", "adam"]

MOMENTUM_BETA = 0.9
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8

# (value, gradient, state, learning rate, step) -> (new value, new state); state in `Optimizer.state` order
Update = Callable[
    [np.ndarray, np.ndarray, tuple[np.ndarray, ...], np.floating, int], tuple[np.ndarray, tuple[np.ndarray, ...]]
]


@dataclass(frozen=True)
class Optimizer:
    name: str
    state: tuple[str, ...]  # the state tensors kept per parameter, by prefix: W1's "v" is vW1
    update: Update
    summary: str  # one line for the README's table

    def state_names(self, layer: int) -> list[str]:
        return [f"{prefix}{p}{layer}" for prefix in self.state for p in ("W", "b")]


def _gd(
    value: np.ndarray, grad: np.ndarray, state: tuple[np.ndarray, ...], lr: np.floating, step: int
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    return value - lr * grad, ()


def _momentum(
    value: np.ndarray, grad: np.ndarray, state: tuple[np.ndarray, ...], lr: np.floating, step: int
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    dtype = value.dtype.type
    beta = dtype(MOMENTUM_BETA)
    v = beta * state[0] + (dtype(1) - beta) * grad
    return value - lr * v, (v,)


def _adam_update(
    value: np.ndarray, grad: np.ndarray, state: tuple[np.ndarray, ...], lr: np.floating, step: int
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    new, v, s = _adam(value, grad, state[0], state[1], lr, step)
    return new, (v, s)


RECORDS = (
    Optimizer("gd", (), _gd, "plain gradient descent: W -= lr * dW"),
    Optimizer("momentum", ("v",), _momentum, f"a velocity, the gradients' moving average (beta {MOMENTUM_BETA})"),
    Optimizer(
        "adam",
        ("v", "s"),
        _adam_update,
        f"first and second moments, bias-corrected (beta1 {ADAM_BETA1}, beta2 {ADAM_BETA2}, eps {ADAM_EPSILON})",
    ),
)
BY_NAME = {o.name: o for o in RECORDS}
OPTIMIZERS = tuple(BY_NAME)
if get_args(OptimizerName) != OPTIMIZERS:  # one record per name the request accepts
    raise ImportError(f"optimizer records {OPTIMIZERS} do not match the names {get_args(OptimizerName)}")


def record(optimizer: str) -> Optimizer:
    try:
        return BY_NAME[optimizer]
    except KeyError:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}") from None


def state_names(optimizer: str, layer: int) -> list[str]:
    """Names of the optimizer-state tensors a layer carries between steps."""
    return record(optimizer).state_names(layer)


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
    rule = record(optimizer)
    new_params: dict[str, np.ndarray] = {}
    new_state: dict[str, np.ndarray] = {}
    for p in ("W", "b"):
        name = f"{p}{layer}"
        value = params[name]
        lr = value.dtype.type(learning_rate)
        old = tuple(state[f"{prefix}{name}"] for prefix in rule.state)
        new_params[name], kept = rule.update(value, grads[f"d{name}"], old, lr, step)
        new_state.update({f"{prefix}{name}": v for prefix, v in zip(rule.state, kept, strict=True)})
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
