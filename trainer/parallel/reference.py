"""The whole data-parallel algorithm in one process, for N simulated workers.

Each simulated worker sees only the slice of the training set it would hold, and the chunks move
between them exactly as the reduce-scatter and gather move them through the cache. It is the
result a distributed run must reproduce bit for bit, and the proof (tests/unit/test_parallel_*)
that the result does not depend on N.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from trainer.nn import optimizers
from trainer.nn.batches import batches
from trainer.parallel import shards, step, tree
from trainer.parallel.flat import Layout


class Trained(NamedTuple):
    params: dict[str, np.ndarray]
    costs: list[float]  # every epoch's cost, as `monolithic.train` returns them
    state: dict[str, np.ndarray]  # the optimizer's (vW1, sW1, ...)
    # every epoch's hits: the examples its batches classified right, each batch with the parameters
    # it met (before its update), as the chain counts them for its epoch's `accuracy`
    hits: list[int]


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
) -> Trained:
    """The trained parameters, the cost of every epoch (the two `monolithic.train` returns), the
    optimizer's state, and every epoch's hits; `on_epoch(epoch, parameters)`, if given, is told of
    each epoch's final parameters (what a run that holds examples out scores them on)."""
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
    hits: list[int] = []
    epoch_cost = np.zeros(1)
    epoch_hits = 0
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
        loss_sum, right = tree.root_value({node: tally for out in sent for node, (_, tally) in out.items()})
        cost = float(loss_sum) / m
        epoch_hits += int(right)
        if l2:
            cost += l2 / (2 * m) * step.l2_sum(current, count)
        epoch_cost = epoch_cost + cost * (m / m_total)
        flat = np.concatenate(pieces)
        if batch.last:
            costs.append(float(epoch_cost[0]))
            hits.append(epoch_hits)
            epoch_cost, epoch_hits = np.zeros(1), 0
            if on_epoch is not None:
                on_epoch(len(costs) - 1, layout.unflatten(flat))
    state_arrays = {k + name: v for k in keys for name, v in layout.unflatten(state[k]).items()}
    return Trained(layout.unflatten(flat), costs, state_arrays, hits)
