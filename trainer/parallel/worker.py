"""One data-parallel worker's steps: its partials, its chunk's reduction and update, the gather.

The arithmetic is `trainer.parallel.step`'s, in the order `reference.train` simulates; what
moves between the workers goes through an exchange passed in (trainer.stores.reduction_store on
the cache), so the result is the reference's, bit for bit, whatever the number of workers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from trainer.nn.batches import epoch_permutation
from trainer.parallel import shards, step, tree
from trainer.parallel.flat import Layout


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
    def collect(
        self,
        step: int,
        chunk: int,
        expected: set[tree.Node],
        deadline: float,
        wait_for: set[tree.Node] | None = None,
        soft: bool = False,
    ) -> dict[tree.Node, tuple[np.ndarray, np.ndarray | None]]: ...
    def published(self, step: int, deadline: float, wait_for: set[int]) -> set[int]: ...
    def publish(
        self,
        step: int,
        chunk: int,
        values: np.ndarray,
        state: np.ndarray,
        figures: tuple[float, float, int] | None,
        epoch_done: int | None = None,
        scored: tuple[int, float, float] | None = None,
    ) -> None: ...
    def gather(self, step: int, deadline: float) -> tuple[list[np.ndarray], float, float, int]: ...
    def states(self, step: int) -> list[np.ndarray]: ...
    def resume_point(self) -> int: ...
    def state(self, step: int, chunk: int) -> np.ndarray: ...
    def epoch_costs(self) -> dict[int, float]: ...
    def epoch_hits(self) -> dict[int, int]: ...
    def validation_scores(self) -> dict[int, tuple[float, float]]: ...
    def end_step(self) -> None: ...


@dataclass
class Result:
    params: dict[str, np.ndarray]
    costs: list[float]  # every epoch's, as chunk 0's owner recorded them
    steps: int  # the steps this invocation ran
    rejoined_at: int  # the step it started after (-1: from the launch's parameters)
    finished: bool = True  # False: it stopped at its budget, for its successor to rejoin after it
    # every epoch's hits (its batches' examples classified right as they met them), as recorded;
    # a run resumed from a checkpoint written without them has none of the epochs before it
    hits: dict[int, int] = field(default_factory=dict)
    lost: set[int] = field(default_factory=set)  # workers whose part it computed at its last steps
    stood_in: set[int] = field(default_factory=set)  # workers whose part it computed at any step


# The scores of the parameters an epoch ended with on the run's held-out examples: (cost, accuracy).
Validation = Callable[[dict[str, np.ndarray]], tuple[float, float]]


@dataclass(frozen=True)
class Takeover:
    """How a worker stands in for a lost one: past `bound_s` (or three times the last step's
    duration, if longer) without a worker's partials or chunk, it computes them itself from
    `shard(k)`, the data of micro-shard k."""

    bound_s: float
    shard: Callable[[int], step.Held]


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
    takeover: Takeover | None = None,
    gathered: Callable[[Gathered], None] | None = None,
    validation: Validation | None = None,
) -> Result:
    """The run's steps as worker `worker`, from the newest step every chunk has published (a worker
    started again by Lambda's retry rejoins there), or from the launch's `params`; each wait for the
    other workers is bounded by `wait_s` (reduction_store.Stalled past it). Before each step after
    the first, `may_continue(steps run)` may stop it (its time or step budget): the result is then
    not `finished`, and a successor started for this worker rejoins where it stopped.

    With `takeover`, a worker whose partials or chunk are not there past the takeover's bound is
    counted lost: this worker computes its nodes from the lost worker's micro-shards (read through
    `takeover.shard`) and, for a lost owner, its chunk's update, with the same bits; at later steps
    it no longer waits for the lost worker, until its partials appear again (it rejoined).

    `gathered`, if given, is told of each step once every chunk of it is gathered (a heartbeat's
    moment, and a checkpoint's when the step closes an epoch).

    `validation`, for a run that holds examples out, scores the parameters each epoch ended with:
    whoever updates chunk 0 at the next epoch's first step (its owner, or a worker standing in for
    it) scores the parameters that step starts from, and publishes the scores with the chunk, once.
    The last epoch's scores are the finisher's (it holds the final parameters)."""
    return _Worker(job, worker, held, params, exchange, wait_s, takeover, gathered, validation).run(may_continue)


@dataclass(frozen=True)
class Gathered:
    """The state of the run after a step, as every worker has it."""

    step: int
    epoch: int
    closes_epoch: bool
    flat: np.ndarray  # every parameter, flat
    exchange: Exchange  # its states(step): every owner's optimizer-state chunk; epoch_costs()


def full_state(job: Job, packed: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every owner's optimizer-state chunk, as published, put together per key (v, s, ...) into
    the flat vector of that key."""
    layout, keys = Layout.of(job.sizes), step.state_keys(job.optimizer)
    chunks = layout.chunks(job.workers)
    parts = [unpack(p, keys, b - a) for p, (a, b) in zip(packed, chunks, strict=True)]
    return {k: np.concatenate([part[k] for part in parts]) for k in keys}


def packed_states(
    sizes: tuple[int, ...], optimizer: str, workers: int, state: dict[str, np.ndarray], dtype: str
) -> list[np.ndarray]:
    """`full_state`'s inverse: each owner's chunk of every key, one after another (as published)."""
    layout, keys = Layout.of(sizes), step.state_keys(optimizer)
    return [
        np.concatenate([state[k][a:b] for k in keys]) if keys else np.zeros(0, dtype=dtype)
        for a, b in layout.chunks(workers)
    ]


class _Worker:
    """One worker's loop; the attributes of the step in progress are set by `begin`."""

    def __init__(
        self,
        job: Job,
        worker: int,
        held: step.Held,
        params: dict[str, np.ndarray],
        exchange: Exchange,
        wait_s: float,
        takeover: Takeover | None,
        gathered: Callable[[Gathered], None] | None = None,
        validation: Validation | None = None,
    ) -> None:
        self.job, self.worker, self.held, self.exchange = job, worker, held, exchange
        self.wait_s, self.takeover, self.gathered, self.validation = wait_s, takeover, gathered, validation
        self.layout = Layout.of(job.sizes)
        self.chunks = self.layout.chunks(job.workers)
        self.keys = step.state_keys(job.optimizer)
        self.flat = self.layout.flatten(params)
        a, b = self.chunks[worker]
        self.state = {k: np.zeros(b - a, dtype=self.flat.dtype) for k in self.keys}
        self.running = np.zeros(1)  # the epoch's cost so far
        self.running_hits = 0  # and its hits
        covers = {w: tree.cover(shards.micro_shards_of(job.workers, w)) for w in range(job.workers)}
        self.expected = {node for nodes in covers.values() for node in nodes}
        self.owner_of = {node: w for w, nodes in covers.items() for node in nodes}
        self.lost: set[int] = set()
        self.stood_in: set[int] = set()
        self.last_step_s = 0.0

    def run(self, may_continue: Callable[[int], bool]) -> Result:
        job, exchange = self.job, self.exchange
        resumed = exchange.resume_point()
        if resumed >= 0:
            pieces, _, cost, hits = exchange.gather(resumed, time.monotonic() + self.wait_s)
            self.flat = np.concatenate(pieces)
            a, b = self.chunks[self.worker]
            self.state = unpack(exchange.state(resumed, self.worker), self.keys, b - a)
            self.running, self.running_hits = np.array([cost]), hits
        total = job.epochs * job.batches
        for number in range(resumed + 1, total):
            if number > resumed + 1 and not may_continue(number - resumed - 1):
                return Result(self.layout.unflatten(self.flat), [], number - resumed - 1, resumed, finished=False)
            began = time.monotonic()
            self.begin(number)
            own = step.worker_nodes(
                self.layout, self.current, job.activations, self.held, self.split, self.m, job.workers, self.worker
            )
            exchange.send(number, own, self.chunks)
            self.state = self.update(self.worker, self.collected(self.worker), self.state)
            if self.takeover is not None:
                self.stand_in_for_lost_owners()
            pieces, _, cost, hits = exchange.gather(number, time.monotonic() + self.wait_s)
            self.flat = np.concatenate(pieces)
            self.running, self.running_hits = np.array([cost]), hits
            if self.gathered is not None:
                self.gathered(Gathered(number, self.epoch, self.batch == job.batches - 1, self.flat, exchange))
            exchange.end_step()
            self.last_step_s = time.monotonic() - began
        recorded = exchange.epoch_costs()
        costs = [recorded[e] for e in range(job.epochs)]
        done, params = total - resumed - 1, self.layout.unflatten(self.flat)
        counted = exchange.epoch_hits()
        return Result(params, costs, done, resumed, hits=counted, lost=self.lost, stood_in=self.stood_in)

    def begin(self, number: int) -> None:
        job = self.job
        self.number = number
        self.epoch, self.batch = divmod(number, job.batches)
        full = job.batch_size is None or job.batch_size >= job.examples
        order = None if full else epoch_permutation(job.seed, self.epoch, job.examples)
        columns = None if order is None else order[self.batch * job.size : (self.batch + 1) * job.size]
        self.m = job.examples if columns is None else len(columns)
        if self.batch == 0:
            self.running, self.running_hits = np.zeros(1), 0
        self.current = self.layout.unflatten(self.flat)
        self.split = shards.split_batch(columns, job.examples)
        self.computed: dict[int, dict] = {}  # lost workers' nodes, computed once this step

    def bound(self) -> float:
        assert self.takeover is not None
        return time.monotonic() + max(self.takeover.bound_s, 3 * self.last_step_s)

    def nodes_of(self, w: int) -> dict:
        """A lost worker's nodes of this step, computed here from its micro-shards."""
        assert self.takeover is not None  # only a worker that stands in for others computes theirs
        if w not in self.computed:
            block = shards.micro_shards_of(self.job.workers, w)
            self.computed[w] = step.block_nodes(
                self.layout, self.current, self.job.activations, self.takeover.shard, self.split, self.m, block
            )
        return self.computed[w]

    def collected(self, j: int) -> dict:
        """Chunk j's nodes of this step: received, or past the bound computed here."""
        if self.takeover is None:
            return self.exchange.collect(self.number, j, self.expected, time.monotonic() + self.wait_s)
        waiting = {n for n in self.expected if self.owner_of[n] not in self.lost}
        got = self.exchange.collect(self.number, j, self.expected, self.bound(), wait_for=waiting, soft=True)
        missing = {self.owner_of[n] for n in self.expected - got.keys()}
        self.lost.difference_update({self.owner_of[n] for n in got} - missing)  # it rejoined
        self.lost.update(missing)
        self.stood_in.update(missing)
        ca, cb = self.chunks[j]
        for w in sorted(missing):
            for node, (grad, tally) in self.nodes_of(w).items():
                got.setdefault(node, (grad[ca:cb], tally if j == 0 else None))
        return got

    def update(self, j: int, got: dict, chunk_state: dict) -> dict:
        """Owner j's update of its chunk, published; its new optimizer state."""
        job, (ca, cb) = self.job, self.chunks[j]
        new, new_state = step.owner_update(
            self.layout,
            self.chunks[j],
            {node: grad for node, (grad, _) in got.items()},
            self.flat[ca:cb],
            chunk_state,
            job.optimizer,
            job.learning_rate,
            job.l2,
            self.m,
            self.number + 1,
        )
        figures, closes, scored = None, None, None
        if j == 0:  # chunk 0's owner also sums the loss and the hits, in the same tree, and keeps the epoch's
            loss_sum, right = tree.root_value({node: tally for node, (_, tally) in got.items()})
            cost = float(loss_sum) / self.m
            if job.l2:
                cost += job.l2 / (2 * self.m) * step.l2_sum(self.current, len(job.activations))
            running = float((self.running + cost * (self.m / job.examples))[0])
            figures = (cost, running, self.running_hits + int(right))
            closes = self.epoch if self.batch == job.batches - 1 else None
            if self.validation is not None and self.batch == 0 and self.epoch > 0:
                # the parameters this step starts from are those the epoch before ended with
                scored = (self.epoch - 1, *self.validation(self.current))
        packed = np.concatenate([new_state[k] for k in self.keys]) if self.keys else self.flat[:0]
        self.exchange.publish(self.number, j, new, packed, figures, closes, scored)
        return new_state

    def stand_in_for_lost_owners(self) -> None:
        """Chunks not published past the bound: their owners are lost; their updates are made here,
        from the owner's optimizer state as the cache has it (SET NX: the same bits if it comes)."""
        live = {w for w in range(self.job.workers) if w not in self.lost}
        unpublished = set(range(self.job.workers)) - self.exchange.published(self.number, self.bound(), live)
        self.lost.update(unpublished)
        self.stood_in.update(unpublished)
        for j in sorted(unpublished):
            ca, cb = self.chunks[j]
            if self.number > 0:
                chunk_state = unpack(self.exchange.state(self.number - 1, j), self.keys, cb - ca)
            else:
                chunk_state = {k: np.zeros(cb - ca, dtype=self.flat.dtype) for k in self.keys}
            self.update(j, self.collected(j), chunk_state)


def unpack(packed: np.ndarray, keys: tuple[str, ...], size: int) -> dict[str, np.ndarray]:
    """An owner's optimizer-state chunk as published: its arrays one after another."""
    return {k: packed[i * size : (i + 1) * size].copy() for i, k in enumerate(keys)}


def holding(x: np.ndarray, y: np.ndarray, workers: int, worker: int) -> step.Held:
    """Worker `worker`'s slice of a training set given whole (a test's, or a loader's that read it all)."""
    lo, hi = shards.examples_of(x.shape[1], shards.micro_shards_of(workers, worker))
    return step.Held(np.asfortranarray(x[:, lo:hi]), np.ascontiguousarray(y[:, lo:hi]), lo)
