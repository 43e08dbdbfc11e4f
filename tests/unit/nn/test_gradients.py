"""Analytic gradients against central differences, for every activation, loss and optimizer."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.nn import layers, losses, optimizers
from trainer.nn.activations import HIDDEN_ACTIVATIONS
from trainer.nn.init import initialise


def _cost(params, x, y, activations, l2):
    a, l2sum = x, 0.0
    n = len(activations)
    for layer in range(1, n + 1):
        a = layers.forward(a, params[f"W{layer}"], params[f"b{layer}"], activations[layer - 1], output=layer == n)
        l2sum += layers.l2_term(params[f"W{layer}"])
    cost, _ = losses.loss_and_gradient(activations[-1], a, y)
    return cost + l2 / (2 * x.shape[1]) * l2sum


def _analytic(params, x, y, activations, l2):
    n = len(activations)
    acts = [x]
    for layer in range(1, n + 1):
        acts.append(
            layers.forward(
                acts[-1], params[f"W{layer}"], params[f"b{layer}"], activations[layer - 1], output=layer == n
            )
        )
    _, dz = losses.loss_and_gradient(activations[-1], acts[-1], y)
    grads, da = {}, None
    for layer in range(n, 0, -1):
        if layer < n:
            dz = layers.hidden_dz(da, acts[layer], activations[layer - 1])
        g, da = layers.backward(dz, acts[layer - 1], params[f"W{layer}"], l2, x.shape[1], need_da_prev=layer > 1)
        grads[f"W{layer}"], grads[f"b{layer}"] = g["dW"], g["db"]
    return grads


def _numerical(params, x, y, activations, l2, eps=1e-6):
    grads = {}
    for name, value in params.items():
        g = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus, minus = {k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in params.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            g[idx] = (_cost(plus, x, y, activations, l2) - _cost(minus, x, y, activations, l2)) / (2 * eps)
        grads[name] = g
    return grads


def _data(output: str, m: int = 7, features: int = 4, classes: int = 3):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(features, m))
    y = rng.integers(0, 2 if output == "sigmoid" else classes, size=(1, m)).astype(np.float64)
    return x, y


@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
@pytest.mark.parametrize("l2", [0.0, 0.7])
def test_backprop_matches_numerical_gradient(hidden: str, output: str, l2: float) -> None:
    x, y = _data(output)
    sizes = [4, 5, 3, 1 if output == "sigmoid" else 3]
    params = initialise(sizes, "he", seed=5)
    # Keep pre-activations away from relu's kink, where the numerical derivative is undefined.
    for name in params:
        if name.startswith("b"):
            params[name] = params[name] + 0.1
    activations = [hidden, hidden, output]
    analytic = _analytic(params, x, y, activations, l2)
    numerical = _numerical(params, x, y, activations, l2)
    for name in params:
        np.testing.assert_allclose(analytic[name], numerical[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_losses_stay_finite_when_units_saturate() -> None:
    z = np.array([[1e4, -1e4, 800.0]])
    cost, dz = losses.binary_cross_entropy(z, np.array([[0.0, 1.0, 1.0]]))
    assert np.isfinite(cost) and np.all(np.isfinite(dz))
    assert cost == pytest.approx((1e4 + 1e4 + 0.0) / 3)
    z = np.array([[1e4, -1e4], [-1e4, 1e4], [0.0, 0.0]])
    cost, dz = losses.categorical_cross_entropy(z, np.array([[1, 1]]))
    assert np.isfinite(cost) and np.all(np.isfinite(dz))


def _quadratic_grad(w):
    return {"dW1": 2 * w["W1"], "db1": 2 * w["b1"]}


@pytest.mark.parametrize("optimizer", optimizers.OPTIMIZERS)
def test_optimizer_first_step_follows_the_negative_gradient(optimizer: str) -> None:
    params = {"W1": np.array([[1.0, -2.0]]), "b1": np.array([[0.5]])}
    state = optimizers.initial_state(optimizer, params, 1)
    grads = _quadratic_grad(params)
    new, _ = optimizers.update(optimizer, 1, params, grads, state, 0.1, step=1)
    if optimizer == "gd":
        expected = params["W1"] - 0.1 * grads["dW1"]
    elif optimizer == "momentum":
        expected = params["W1"] - 0.1 * (1 - optimizers.MOMENTUM_BETA) * grads["dW1"]
    else:  # bias-corrected Adam's first step is lr * g / (|g| + eps)
        expected = params["W1"] - 0.1 * grads["dW1"] / (np.abs(grads["dW1"]) + optimizers.ADAM_EPSILON)
    np.testing.assert_allclose(new["W1"], expected, rtol=1e-12)


@pytest.mark.parametrize("optimizer", optimizers.OPTIMIZERS)
def test_optimizer_minimises_a_quadratic(optimizer: str) -> None:
    params = {"W1": np.array([[1.0, -2.0]]), "b1": np.array([[0.5]])}
    state = optimizers.initial_state(optimizer, params, 1)
    for step in range(1, 301):
        new, new_state = optimizers.update(optimizer, 1, params, _quadratic_grad(params), state, 0.05, step)
        params, state = new, {**state, **new_state}
    assert np.abs(params["W1"]).max() < 0.05 and abs(params["b1"][0, 0]) < 0.05
