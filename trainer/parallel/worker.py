"""One data-parallel worker's steps: its partials, its chunk's reduction and update, the gather.

The arithmetic is `trainer.parallel.step`'s, in the order `reference.train` simulates; what
moves between the workers goes through an exchange passed in (trainer.stores.reduction_store on
the cache), so the result is the reference's, bit for bit, whatever the number of workers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from trainer.parallel import shards, step, tree
from trainer.parallel.flat import Layout
from trainer.parallel.reference import epoch_permutation


@dataclass(frozen=True)
class Job:
    """What every worker of a run knows alike."""

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    optimizer: str
    learning_rate: float
    l2: float
    batch_size: int | None  # None: the full batch
    examples: int
    epochs: int
    seed: int
    workers: int

    @property
    def size(self) -> int:
        return self.examples if self.batch_size is None else min(self.batch_size, self.examples)

    @property
    def batches(self) -> int:
        return math.ceil(self.examples / self.size)


class Exchange(Protocol):
    def send(self, step: int, nodes: dict, chunks: list[tuple[int, int]]) -> None: ...
    def collect(self, step: int, chunk: int, expected: set, deadline: float) -> dict: ...
    def publish(self, step: int, chunk: int, values: np.ndarray, cost: float | None) -> None: ...
    def gather(self, step: int, deadline: float) -> tuple[list[np.ndarray], float]: ...
    def end_step(self) -> None: ...


@dataclass
class Result:
    params: dict[str, np.ndarray]
    costs: list[float]
    state: dict[str, np.ndarray]  # this worker's chunk of the optimizer's state ("v", "s")
    steps: int


def expected_nodes(workers: int) -> set[tree.Node]:
    return {node for w in range(workers) for node in tree.cover(shards.micro_shards_of(workers, w))}


def train(
    job: Job,
    worker: int,
    held: step.Held,
    params: dict[str, np.ndarray],
    exchange: Exchange,
    wait_s: float,
) -> Result:
    """Every step of the run as worker `worker`, from the initial `params`; each wait for the other
    workers is bounded by `wait_s` (reduction_store.Stalled past it)."""
    layout = Layout.of(job.sizes)
    chunks = layout.chunks(job.workers)
    a, b = chunks[worker]
    flat = layout.flatten(params)
    keys = step.state_keys(job.optimizer)
    state = {k: np.zeros(b - a, dtype=flat.dtype) for k in keys}
    expected = expected_nodes(job.workers)
    count = len(job.activations)
    costs, number = [], 0
    for epoch in range(job.epochs):
        full = job.batch_size is None or job.batch_size >= job.examples
        order = None if full else epoch_permutation(job.seed, epoch, job.examples)
        epoch_cost = np.zeros(1)
        for batch in range(job.batches):
            columns = None if order is None else order[batch * job.size : (batch + 1) * job.size]
            m = job.examples if columns is None else len(columns)
            current = layout.unflatten(flat)
            nodes = step.worker_nodes(
                layout,
                current,
                job.activations,
                held,
                shards.split_batch(columns, job.examples),
                m,
                job.workers,
                worker,
            )
            exchange.send(number, nodes, chunks)
            got = exchange.collect(number, worker, expected, time.monotonic() + wait_s)
            new, state = step.owner_update(
                layout,
                chunks[worker],
                {node: grad for node, (grad, _) in got.items()},
                flat[a:b],
                state,
                job.optimizer,
                job.learning_rate,
                job.l2,
                m,
                epoch * job.batches + batch + 1,
            )
            cost = None
            if worker == 0:  # chunk 0's owner also sums the loss, in the same tree
                cost = float(tree.root_value({node: c for node, (_, c) in got.items()})[0]) / m
                if job.l2:
                    cost += job.l2 / (2 * m) * step.l2_sum(current, count)
            exchange.publish(number, worker, new, cost)
            pieces, batch_cost = exchange.gather(number, time.monotonic() + wait_s)
            flat = np.concatenate(pieces)
            epoch_cost = epoch_cost + batch_cost * (m / job.examples)
            exchange.end_step()
            number += 1
        costs.append(float(epoch_cost[0]))
    return Result(layout.unflatten(flat), costs, state, number)


def holding(x: np.ndarray, y: np.ndarray, workers: int, worker: int) -> step.Held:
    """Worker `worker`'s slice of a training set given whole (a test's, or a loader's that read it all)."""
    lo, hi = shards.examples_of(x.shape[1], shards.micro_shards_of(workers, worker))
    return step.Held(np.asfortranarray(x[:, lo:hi]), np.ascontiguousarray(y[:, lo:hi]), lo)
