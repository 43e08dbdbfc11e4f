"""The whole data-parallel algorithm in one process, for N simulated workers.

Each simulated worker sees only the slice of the training set it would hold, and the chunks move
between them exactly as the reduce-scatter and gather move them through the cache. It is the
result a distributed run must reproduce bit for bit, and the proof (tests/unit/test_parallel_*)
that the result does not depend on N.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from trainer.nn import optimizers
from trainer.nn.batches import batches
from trainer.parallel import shards, step, tree
from trainer.parallel.flat import Layout


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
    workers: int = 1,
    on_epoch: Callable[[int, dict[str, np.ndarray]], None] | None = None,
) -> tuple[dict[str, np.ndarray], list[float], dict[str, np.ndarray]]:
    """(trained parameters, cost of every epoch, optimizer state), as `monolithic.train` returns the
    first two; `on_epoch(epoch, parameters)`, if given, is told of each epoch's final parameters
    (what a run that holds examples out scores them on)."""
    if optimizer not in optimizers.OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    shards.check_workers(workers)
    count = len(activations)
    m_total = x.shape[1]
    sizes = [x.shape[0], *(params[f"W{layer}"].shape[0] for layer in range(1, count + 1))]
    layout = Layout.of(sizes)
    flat = layout.flatten(params)
    keys = step.state_keys(optimizer)
    state = {k: np.zeros_like(flat) for k in keys}
    held = []
    for worker in range(workers):
        lo, hi = shards.examples_of(m_total, shards.micro_shards_of(workers, worker))
        held.append(step.Held(np.asfortranarray(x[:, lo:hi]), np.ascontiguousarray(y[:, lo:hi]), lo))
    chunks = layout.chunks(workers)
    costs: list[float] = []
    epoch_cost = np.zeros(1)
    for batch in batches(m_total, batch_size, epochs, seed):
        m = batch.m
        split = shards.split_batch(batch.columns, m_total)
        current = layout.unflatten(flat)
        sent = [step.worker_nodes(layout, current, activations, held[w], split, m, workers, w) for w in range(workers)]
        pieces = []
        for j, (a, b) in enumerate(chunks):
            nodes = {node: grad[a:b] for out in sent for node, (grad, _) in out.items()}
            new, new_state = step.owner_update(
                layout,
                chunks[j],
                nodes,
                flat[a:b],
                {k: state[k][a:b] for k in keys},
                optimizer,
                learning_rate,
                l2,
                m,
                batch.t,
            )
            pieces.append(new)
            for k in keys:
                state[k][a:b] = new_state[k]
        loss_sum = tree.root_value({node: cost for out in sent for node, (_, cost) in out.items()})
        cost = float(loss_sum[0]) / m
        if l2:
            cost += l2 / (2 * m) * step.l2_sum(current, count)
        epoch_cost = epoch_cost + cost * (m / m_total)
        flat = np.concatenate(pieces)
        if batch.last:
            costs.append(float(epoch_cost[0]))
            epoch_cost = np.zeros(1)
            if on_epoch is not None:
                on_epoch(len(costs) - 1, layout.unflatten(flat))
    return layout.unflatten(flat), costs, {k + name: v for k in keys for name, v in layout.unflatten(state[k]).items()}
