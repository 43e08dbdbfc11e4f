"""Plain numpy training of the whole network in one loop: the reference the chain must match,
and the baseline of the benchmark. It uses the same layer functions, in the same order, but
keeps every tensor in local variables, with no chain, store or event in between."""

from __future__ import annotations

import numpy as np

from trainer.nn import layers, losses, optimizers
from trainer.nn.batches import batches


def train(
    x: np.ndarray,
    y: np.ndarray,
    params: dict[str, np.ndarray],
    activations: list[str],
    epochs: int,
    learning_rate: float,
    optimizer: str = "gd",
    l2: float = 0.0,
    batch_size: int | None = None,
    seed: int = 1,
) -> tuple[dict[str, np.ndarray], list[float]]:
    """Returns the trained parameters and the cost of every epoch."""
    params = dict(params)
    n_layers = len(activations)
    m_total = x.shape[1]
    state = optimizers.initial_state(optimizer, params, n_layers)
    costs: list[float] = []
    epoch_cost = np.zeros(1)
    for batch in batches(m_total, batch_size, epochs, seed):
        if batch.columns is None:
            xb, yb = x, y
        else:
            xb, yb = x[:, batch.columns], y[:, batch.columns]
        m = batch.m
        acts = [xb]
        l2sum = 0.0
        for layer in range(1, n_layers + 1):
            w = params[f"W{layer}"]
            acts.append(
                layers.forward(acts[-1], w, params[f"b{layer}"], activations[layer - 1], output=layer == n_layers)
            )
            if l2:  # as the chain does: without L2 the sum of squares is never used
                l2sum = l2sum + layers.l2_term(w)
        cost, dz = losses.loss_and_gradient(activations[-1], acts[-1], yb)
        if l2:
            cost += l2 / (2 * m) * l2sum
        epoch_cost = epoch_cost + cost * (m / m_total)
        for layer in range(n_layers, 0, -1):
            grads, da_prev = layers.backward(dz, acts[layer - 1], params[f"W{layer}"], l2, m, layer > 1)
            new_params, new_state = optimizers.update(
                optimizer,
                layer,
                params,
                {f"dW{layer}": grads["dW"], f"db{layer}": grads["db"]},
                state,
                learning_rate,
                batch.t,
            )
            params.update(new_params)
            state.update(new_state)
            if da_prev is not None:
                dz = layers.hidden_dz(da_prev, acts[layer - 1], activations[layer - 2])
        if batch.last:
            costs.append(float(epoch_cost[0]))
            epoch_cost = np.zeros(1)
    return params, costs
