"""One data-parallel worker's steps: its partials, its chunk's reduction and update, the gather.

The arithmetic is `trainer.parallel.step`'s, in the order `reference.train` simulates; what
moves between the workers goes through an exchange passed in (trainer.stores.reduction_store on
the cache), so the result is the reference's, bit for bit, whatever the number of workers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
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
    def publish(
        self,
        step: int,
        chunk: int,
        values: np.ndarray,
        state: np.ndarray,
        costs: tuple[float, float] | None,
        epoch_done: int | None = None,
    ) -> None: ...
    def gather(self, step: int, deadline: float) -> tuple[list[np.ndarray], float, float]: ...
    def resume_point(self) -> int: ...
    def state(self, step: int, chunk: int) -> np.ndarray: ...
    def epoch_costs(self) -> dict[int, float]: ...
    def end_step(self) -> None: ...


@dataclass
class Result:
    params: dict[str, np.ndarray]
    costs: list[float]  # every epoch's, as chunk 0's owner recorded them
    steps: int  # the steps this invocation ran
    rejoined_at: int  # the step it started after (-1: from the launch's parameters)
    finished: bool = True  # False: it stopped at its budget, for its successor to rejoin after it


def expected_nodes(workers: int) -> set[tree.Node]:
    return {node for w in range(workers) for node in tree.cover(shards.micro_shards_of(workers, w))}


def train(
    job: Job,
    worker: int,
    held: step.Held,
    params: dict[str, np.ndarray],
    exchange: Exchange,
    wait_s: float,
    may_continue: Callable[[int], bool] = lambda steps: True,
) -> Result:
    """The run's steps as worker `worker`, from the newest step every chunk has published (a worker
    started again by Lambda's retry rejoins there), or from the launch's `params`; each wait for the
    other workers is bounded by `wait_s` (reduction_store.Stalled past it). Before each step after
    the first, `may_continue(steps run)` may stop it (its time or step budget): the result is then
    not `finished`, and a successor started for this worker rejoins where it stopped."""
    layout = Layout.of(job.sizes)
    chunks = layout.chunks(job.workers)
    a, b = chunks[worker]
    keys = step.state_keys(job.optimizer)
    flat = layout.flatten(params)
    state = {k: np.zeros(b - a, dtype=flat.dtype) for k in keys}
    running = np.zeros(1)
    resumed = exchange.resume_point()
    if resumed >= 0:
        pieces, _, cost = exchange.gather(resumed, time.monotonic() + wait_s)
        flat = np.concatenate(pieces)
        saved = exchange.state(resumed, worker)
        state = {k: saved[i * (b - a) : (i + 1) * (b - a)].copy() for i, k in enumerate(keys)}
        running = np.array([cost])
    expected = expected_nodes(job.workers)
    count = len(job.activations)
    total = job.epochs * job.batches
    for number in range(resumed + 1, total):
        if number > resumed + 1 and not may_continue(number - resumed - 1):
            return Result(layout.unflatten(flat), [], number - resumed - 1, resumed, finished=False)
        epoch, batch = divmod(number, job.batches)
        full = job.batch_size is None or job.batch_size >= job.examples
        columns = (
            None
            if full
            else epoch_permutation(job.seed, epoch, job.examples)[batch * job.size : (batch + 1) * job.size]
        )
        m = job.examples if columns is None else len(columns)
        if batch == 0:
            running = np.zeros(1)
        current = layout.unflatten(flat)
        split = shards.split_batch(columns, job.examples)
        nodes = step.worker_nodes(layout, current, job.activations, held, split, m, job.workers, worker)
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
            number + 1,
        )
        costs, closes = None, None
        if worker == 0:  # chunk 0's owner also sums the loss, in the same tree, and keeps the epoch's
            cost = float(tree.root_value({node: c for node, (_, c) in got.items()})[0]) / m
            if job.l2:
                cost += job.l2 / (2 * m) * step.l2_sum(current, count)
            costs = (cost, float((running + cost * (m / job.examples))[0]))
            closes = epoch if batch == job.batches - 1 else None
        packed = np.concatenate([state[k] for k in keys]) if keys else flat[:0]
        exchange.publish(number, worker, new, packed, costs, closes)
        pieces, _, cost = exchange.gather(number, time.monotonic() + wait_s)
        flat = np.concatenate(pieces)
        running = np.array([cost])
        exchange.end_step()
    recorded = exchange.epoch_costs()
    return Result(layout.unflatten(flat), [recorded[e] for e in range(job.epochs)], total - resumed - 1, resumed)


def holding(x: np.ndarray, y: np.ndarray, workers: int, worker: int) -> step.Held:
    """Worker `worker`'s slice of a training set given whole (a test's, or a loader's that read it all)."""
    lo, hi = shards.examples_of(x.shape[1], shards.micro_shards_of(workers, worker))
    return step.Held(np.asfortranarray(x[:, lo:hi]), np.ascontiguousarray(y[:, lo:hi]), lo)
