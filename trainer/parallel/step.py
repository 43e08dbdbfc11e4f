"""The two halves of a data-parallel step, as each worker runs them; I/O happens between them.

1. `worker_nodes`: a worker computes the partials of its micro-shards and sums them up to the tree
   nodes that cover its block (`tree.cover`); it sends each node's slice of chunk j to worker j.
2. `owner_update`: worker j combines everyone's nodes for chunk j into the root (`tree.root_value`),
   adds L2, and applies the optimizer to its chunk of the parameters and of the optimizer state.
   The workers then gather every chunk: the next step's parameters, the same bits everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from trainer.nn import optimizers
from trainer.parallel import partials, tree
from trainer.parallel.flat import Layout
from trainer.parallel.shards import micro_shards_of


@dataclass(frozen=True)
class Held:
    """The slice of the training set a worker holds: examples first .. first + x.shape[1] - 1."""

    x: np.ndarray
    y: np.ndarray
    first: int


def worker_nodes(
    layout: Layout,
    params: dict[str, np.ndarray],
    activations: tuple[str, ...] | list[str],
    held: Held,
    batch_columns: list[np.ndarray],
    batch_size: int,
    workers: int,
    worker: int,
) -> dict[tree.Node, tuple[np.ndarray, np.ndarray]]:
    """{node: (flat gradient sum, [loss sum, hits])} for the nodes covering this worker's micro-shards.
    `batch_columns` is `shards.split_batch` of the batch: every worker computes it alike."""
    mine = micro_shards_of(workers, worker)
    return block_nodes(layout, params, activations, lambda k: held, batch_columns, batch_size, mine)


def block_nodes(
    layout: Layout,
    params: dict[str, np.ndarray],
    activations: tuple[str, ...] | list[str],
    held_of: Callable[[int], Held],
    batch_columns: list[np.ndarray],
    batch_size: int,
    block: range,
) -> dict[tree.Node, tuple[np.ndarray, np.ndarray]]:
    """The nodes covering the micro-shards `block`, from the data `held_of(k)` holding micro-shard
    k: a worker's own, or a lost worker's, computed by another (the same bits either way)."""
    dtype = params["W1"].dtype
    grads: dict[int, np.ndarray] = {}
    costs: dict[int, np.ndarray] = {}
    for k in block:
        held = held_of(k)
        x, y = partials.gather(held.x, held.y, held.first, batch_columns[k])
        grads[k], costs[k] = partials.micro_shard(layout, params, activations, x, y, batch_size, dtype)
    return {node: (tree.node_value(node, grads), tree.node_value(node, costs)) for node in tree.cover(block)}


def owner_update(
    layout: Layout,
    chunk: tuple[int, int],
    nodes: Mapping[tree.Node, np.ndarray],
    values: np.ndarray,
    state: dict[str, np.ndarray],
    optimizer: str,
    learning_rate: float,
    l2: float,
    batch_size: int,
    update_count: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(new parameter chunk, new optimizer state chunk) from every worker's nodes of this chunk.
    `values` is the chunk of the parameters before the step; `state` maps "v"/"s" to its chunk
    of the optimizer's state (none for gd)."""
    grad = tree.root_value(nodes)
    dtype = values.dtype.type
    spans = layout.weight_spans(*chunk)
    if l2 and spans:
        grad = grad.copy()
        scale = dtype(l2) / dtype(batch_size)
        for lo, hi in spans:  # as trainer.nn.layers.backward adds it: after the product, on the weights only
            grad[lo:hi] = grad[lo:hi] + scale * values[lo:hi]
    return update_chunk(optimizer, values, grad, state, learning_rate, update_count)


def update_chunk(
    optimizer: str, values: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], learning_rate: float, step: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The chain's optimizer (trainer.nn.optimizers) applied to a flat chunk. Every optimizer is
    elementwise, so a chunk's update has the bits the whole vector's would have there. The chunk
    goes in as a "layer" whose W is the chunk and whose b is empty."""
    empty = values[:0]
    params = {"W0": values, "b0": empty}
    grads = {"dW0": grad, "db0": empty}
    old = {f"{k}W0": v for k, v in state.items()} | {f"{k}b0": empty for k in state}
    new_params, new_state = optimizers.update(optimizer, 0, params, grads, old, learning_rate, step)
    return new_params["W0"], {k: new_state[f"{k}W0"] for k in state}


def state_keys(optimizer: str) -> tuple[str, ...]:
    """The optimizer's state per parameter, as prefixes of the chain's names (vW1, sW1, ...)."""
    return tuple(dict.fromkeys(name[0] for name in optimizers.state_names(optimizer, 1)))


def l2_sum(params: dict[str, np.ndarray], layers: int) -> float:
    """The sum of the weights' squares, accumulated layer by layer as the chain's forward steps do."""
    from trainer.nn.layers import l2_term

    total = 0.0
    for layer in range(1, layers + 1):
        total = total + l2_term(params[f"W{layer}"])
    return total
