"""A data-parallel run modelled on Lambda: pure arithmetic, the parallel section's measurements in,
the modelled figures out (tests/performance/parallel.py feeds it; tests/unit/test_parallel_model.py
checks it).

What one step costs with N workers:

- **compute**: the measured math of one step (every micro-shard's partials and the optimizer's update,
  summed over the workers: thread CPU seconds in their execution environments, so that workers that
  outnumber this machine's cores do not count their waits) split evenly over the N workers. One
  worker is the fused chain, with its own measured math per step.
- **sync**: LNN's reduce-scatter through the cache moves about (3 + (1 + state slots) / N) parameter
  vectors per worker and step (`lnn_traffic`, exact to the byte for the run's layout). The step waits
  for the slower of the function's link (those bytes at the function's bandwidth) and the cache node
  (every worker's bytes at the node's), plus its Redis round trips. LambdaML's single summer is
  modelled beside it: every worker uploads its gradient, worker 0 downloads the N - 1 others and
  uploads the sum, every worker downloads it — (N + 2) gradients on the summer's link in a row, plus
  its polling (a 100 ms sleep between looks: half of one on average, at each of the two waits).

A run: the launch, one asynchronous hop to start the workers, each worker's share of the data
loaded (from the cache, or from the dataset object in S3 when the workers read it there) at the
function's bandwidth, the steps, and a hop at every hand-on (one invocation runs at most `max_steps`
steps, and at most the function's timeout less its margin). The launch is one function: its time as
measured here plus the bytes it moves (read from S3 and written to the cache) at the function's
bandwidth, since on the local cloud those bytes cross loopback. The chain's launch moves the whole
set twice; a data-parallel launch that leaves the examples in the object (trainer/data/direct.py)
moves the labels, the test set and the metadata only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from trainer.parallel import shards, tree
from trainer.parallel.flat import Layout
from trainer.stores import reduction_store

MODELLED_WORKERS = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Assumptions:
    """The published and assumed figures the model runs on (the README says where each comes from)."""

    function_mbps: float = 600.0  # a Lambda function's sustained network bandwidth, both directions together
    node_gbps: float = 10.0  # the cache node's: its network and its one engine thread copying values
    redis_rtt_ms: float = 0.5  # a round trip to ElastiCache in the same availability zone
    hop_ms: float = 50.0  # one asynchronous invocation: the Invoke call, the queue and a warm start
    round_trips_per_step: int = 5  # send, collect, publish, the done stream, the chunks' MGET
    lambdaml_poll_ms: float = 100.0  # LambdaML's sleep between looks at the storage
    lambdaml_round_trips: int = 4  # upload, the summer's reads and its upload, the download
    gb_s_price: float = 0.0000166667
    request_price: float = 0.20 / 1e6
    invocation_budget_s: float = 885.0  # the trainer's 900 s timeout less the request's 15 s margin

    @property
    def function_bytes_s(self) -> float:
        return self.function_mbps * 1e6 / 8

    @property
    def node_bytes_s(self) -> float:
        return self.node_gbps * 1e9 / 8


# -- traffic ----------------------------------------------------------------------------------------
TALLY = 16  # a tree node's loss sum and hits, two float64, to chunk 0's owner
FIGURES = reduction_store.FIGURES_BYTES  # chunk 0's: the batch's cost, the epoch's running cost and hits


def lnn_traffic(chunk_sizes: list[int], itemsize: int, state_slots: int) -> tuple[float, float]:
    """(bytes sent, bytes received) per worker and step, averaged over the workers, of LNN's
    reduction (trainer.stores.reduction_store) with these chunks (one per worker, in parameters):
    each worker's tree nodes' slices of every chunk (and their tallies for chunk 0: the loss sum
    and the hits, two float64), the owner's updated chunk (chunk 0 with its figures: the batch's
    cost, the epoch's running cost and hits, three float64) and its optimizer state; received:
    every node's slice of its own chunk (with the tallies for chunk 0) and every chunk."""
    workers = len(chunk_sizes)
    total = sum(chunk_sizes)
    covers = [len(tree.cover(shards.micro_shards_of(workers, w))) for w in range(workers)]
    nodes = sum(covers)
    sent = received = 0.0
    for w in range(workers):
        own = chunk_sizes[w] * itemsize
        sent += covers[w] * (total * itemsize + TALLY)  # its nodes' slices of every chunk, the tallies to chunk 0
        sent += own + (FIGURES if w == 0 else 0) + state_slots * own  # its chunk (with the figures) and state
        received += nodes * own + (TALLY * nodes if w == 0 else 0)  # every node's slice of its chunk
        received += total * itemsize + FIGURES  # the gather: every chunk, chunk 0's figures
    return sent / workers, received / workers


def even_chunks(parameters: int, workers: int) -> list[int]:
    """`parameters` cut into one chunk per worker, as trainer.parallel.flat.Layout.chunks cuts them."""
    base, extra = divmod(parameters, workers)
    return [base + (1 if i < extra else 0) for i in range(workers)]


def layout_chunks(sizes: tuple[int, ...] | list[int], workers: int) -> list[int]:
    return [b - a for a, b in Layout.of(tuple(sizes)).chunks(workers)]


def lnn_bytes_per_worker(parameters: int, itemsize: int, workers: int, state_slots: int) -> float:
    """Bytes a worker moves per step (sent + received). Beyond 16 workers (more workers than
    today's micro-shards), as if there were one micro-shard per worker: one node each."""
    if workers == 1:
        return 0.0  # the chain: nothing to reduce
    if workers <= shards.MAX_WORKERS:
        sent, received = lnn_traffic(even_chunks(parameters, workers), itemsize, state_slots)
        return sent + received
    vector = parameters * itemsize
    return (3 + (1 + state_slots) / workers) * vector + TALLY + FIGURES * 2


def lambdaml_summer_bytes(parameters: int, itemsize: int, workers: int) -> float:
    """Bytes worker 0, LambdaML's summer, moves per step: the N - 1 other gradients in, the sum out."""
    return 0.0 if workers == 1 else workers * parameters * itemsize


# -- one step -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sync:
    lnn_s: float  # the step's wait with the function's bandwidth shared by both directions
    lnn_full_duplex_s: float  # the same with each direction at the full bandwidth (the function's and the node's)
    lnn_bytes: float  # per worker per step
    lambdaml_s: float  # LambdaML's single summer, transfers and round trips only
    lambdaml_polling_s: float  # ... and its polling sleeps


def sync(parameters: int, itemsize: int, workers: int, state_slots: int, a: Assumptions) -> Sync:
    """The time one step waits for the reduction, with N workers and this many parameters."""
    if workers == 1:
        return Sync(0.0, 0.0, 0.0, 0.0, 0.0)
    per_worker = lnn_bytes_per_worker(parameters, itemsize, workers, state_slots)
    vector = parameters * itemsize
    received = 2 * vector  # every node's slice of its chunk, and every chunk: the larger direction
    rtts = a.round_trips_per_step * a.redis_rtt_ms / 1000
    node = workers * per_worker / a.node_bytes_s
    lnn = max(per_worker / a.function_bytes_s, node) + rtts
    duplex = max(received / a.function_bytes_s, workers * received / a.node_bytes_s) + rtts
    summer = (workers + 2) * vector / a.function_bytes_s + a.lambdaml_round_trips * a.redis_rtt_ms / 1000
    polling = summer + 2 * (a.lambdaml_poll_ms / 2) / 1000
    return Sync(lnn, duplex, per_worker, summer, polling)


def micro_shards(workers: int) -> int:
    """Micro-shards a step is cut into: today's 16, or one per worker past 16 (hypothetical)."""
    return max(shards.MICRO_SHARDS, workers)


def worker_math_s(worker_math_16_s: float, overhead_s: float, workers: int) -> float:
    """Every worker's math of one step, summed, with N workers: as measured (16 micro-shards), plus
    the fixed cost of each micro-shard past 16."""
    return worker_math_16_s + (micro_shards(workers) - shards.MICRO_SHARDS) * overhead_s


def step_s(chain_step_s: float, worker_math_16_s: float, overhead_s: float, sync_s: float, workers: int) -> float:
    """One step's time: the chain's own with one worker; else the workers' math split N ways and the sync."""
    if workers == 1:
        return chain_step_s
    return worker_math_s(worker_math_16_s, overhead_s, workers) / workers + sync_s


@dataclass(frozen=True)
class Math:
    """The math of one step of B examples, fitted to two measured batch sizes: the chain's
    `chain_fixed_s + chain_example_s * B`, the workers' (summed) `16 * shard_fixed_s + example_s * B`
    (a micro-shard's fixed cost: its Python, its small products' set-up, its tree node)."""

    chain_fixed_s: float
    chain_example_s: float
    shard_fixed_s: float
    example_s: float

    @classmethod
    def fit(cls, small: tuple[int, float, float], large: tuple[int, float, float]) -> Math:
        """From (batch, the chain's math per step, the workers' math per step) at two batch sizes."""
        (b1, chain1, work1), (b2, chain2, work2) = small, large
        chain_example = (chain2 - chain1) / (b2 - b1)
        example = (work2 - work1) / (b2 - b1)
        return cls(
            chain_fixed_s=max(0.0, chain1 - chain_example * b1),
            chain_example_s=chain_example,
            shard_fixed_s=max(0.0, (work1 - example * b1) / shards.MICRO_SHARDS),
            example_s=example,
        )

    def chain(self, batch: float) -> float:
        return self.chain_fixed_s + self.chain_example_s * batch

    def workers(self, batch: float, workers: int) -> float:
        """Every worker's math of the step, summed."""
        return micro_shards(workers) * self.shard_fixed_s + self.example_s * batch


# -- one run ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """What the model needs of a measured run."""

    parameters: int
    itemsize: int
    state_slots: int
    steps: int  # of the whole run
    global_batch: int
    chain_step_s: float  # the fused chain's math per step (one worker)
    worker_math_s: float  # every worker's math of one step, summed (16 micro-shards)
    shard_fixed_s: float  # a micro-shard's fixed cost (Math.fit): what more micro-shards add
    data_bytes: int  # the training set as the cache holds it (every worker reads its share)
    launch_s: float  # the chain's launch, measured here
    max_steps: int  # per invocation
    memory_mb: dict[int, int]  # the function's memory size for N workers
    launch_bytes: int = 0  # what the chain's launch reads from S3 and writes to the cache
    workers_launch_s: float | None = None  # a data-parallel launch, measured here (None: as the chain's)
    workers_launch_bytes: int | None = None  # what it moves (None: as the chain's)

    def launch(self, workers: int, a: Assumptions) -> float:
        """The launch on Lambda with N workers: as measured here, plus its bytes at the function's
        bandwidth."""
        if workers == 1 or self.workers_launch_s is None:
            here, moved = self.launch_s, self.launch_bytes
        else:
            here = self.workers_launch_s
            moved = self.launch_bytes if self.workers_launch_bytes is None else self.workers_launch_bytes
        return here + moved / a.function_bytes_s


@dataclass(frozen=True)
class Modelled:
    workers: int
    launch_s: float  # the launch on Lambda (Workload.launch)
    step_s: float
    sync_s: float
    run_s: float
    steps_s: float  # the steps alone
    invocations: int  # per worker
    speedup: float  # the run against one worker's (the chain's)
    efficiency: float  # speedup / N
    steps_efficiency: float  # the fastest one-worker step / (N x the step): the steps' parallel efficiency
    gb_s: float
    cost: float


def model(w: Workload, a: Assumptions, workers_list: tuple[int, ...] = MODELLED_WORKERS) -> list[Modelled]:
    """The run with each N of `workers_list`, the first being one worker (the chain)."""
    rows: list[Modelled] = []
    base_run = 0.0
    best_one = min(w.chain_step_s, w.worker_math_s)  # one worker: the chain, or the micro-shards' math
    for n in workers_list:
        s = sync(w.parameters, w.itemsize, n, w.state_slots, a).lnn_s
        per_step = step_s(w.chain_step_s, w.worker_math_s, w.shard_fixed_s, s, n)
        steps = w.steps * per_step
        invocations = max(math.ceil(w.steps / w.max_steps), math.ceil(steps / a.invocation_budget_s), 1)
        load = w.data_bytes / n / a.function_bytes_s
        launch = w.launch(n, a)
        run = launch + invocations * a.hop_ms / 1000 + load + steps
        if n == workers_list[0]:
            base_run = run * n
        gb_s = n * w.memory_mb[n] / 1024 * (run - launch) + 1024 / 1024 * launch
        requests = n * invocations + 1
        speedup = base_run / run
        rows.append(
            Modelled(
                workers=n,
                launch_s=launch,
                step_s=per_step,
                sync_s=s,
                run_s=run,
                steps_s=steps,
                invocations=invocations,
                speedup=speedup,
                efficiency=speedup / n,
                steps_efficiency=best_one / (n * per_step),
                gb_s=gb_s,
                cost=gb_s * a.gb_s_price + requests * a.request_price,
            )
        )
    return rows


# -- when it pays ---------------------------------------------------------------------------------------
LARGEST_BATCH = 10**9  # past this, "never"


@dataclass(frozen=True)
class BreakEven:
    workers: int
    sync_s: float
    over_one: int | None  # the smallest global batch with which N workers beat one (the chain); None: never
    over_half: int | None  # ... with which N workers beat N / 2
    efficient: int | None  # ... with which the N workers' steps are `efficiency` efficient


def smallest_batch(holds: Callable[[int], bool]) -> int | None:
    """The smallest batch size for which `holds` (false below it, true from it on), by bisection."""
    if not holds(LARGEST_BATCH):
        return None
    lo, hi = 0, LARGEST_BATCH  # holds(hi); not holds(lo), or lo == 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if holds(mid) else (mid, hi)
    return hi


def break_even(
    parameters: int,
    itemsize: int,
    state_slots: int,
    fitted: Math,
    a: Assumptions,
    efficiency: float = 0.7,
    workers_list: tuple[int, ...] = MODELLED_WORKERS[1:],
) -> list[BreakEven]:
    """For each N, the global batch size (examples per step) below which adding workers stops paying:
    a step of B examples takes fitted.chain(B) on one worker (the chain) and
    fitted.workers(B, N) / N + sync(N) on N workers; the steps' efficiency is the faster one-worker
    step (the chain's, or the micro-shards' math on one worker) / (N x the N-worker step)."""

    def step(batch: int, n: int) -> float:
        if n == 1:
            return fitted.chain(batch)
        return fitted.workers(batch, n) / n + sync(parameters, itemsize, n, state_slots, a).lnn_s

    def best_one(batch: int) -> float:
        return min(fitted.chain(batch), fitted.workers(batch, 1))

    rows = []
    for n in workers_list:
        rows.append(
            BreakEven(
                workers=n,
                sync_s=sync(parameters, itemsize, n, state_slots, a).lnn_s,
                over_one=smallest_batch(lambda b, n=n: step(b, n) < step(b, 1)),
                over_half=smallest_batch(lambda b, n=n: step(b, n) < step(b, max(1, n // 2))),
                efficient=smallest_batch(lambda b, n=n: best_one(b) >= efficiency * n * step(b, n)),
            )
        )
    return rows
