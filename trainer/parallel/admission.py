"""Whether a data-parallel request can run in this deployment: checked at launch, with the
request's other checks, before anything is written (trainer.handlers.launch.validate).

A data-parallel step waits for every worker, so all N must run at once: a request for more workers
than the trainer may run concurrently would stall, not slow down. Each worker holds its slice of
the training set in memory (trainer.request.estimate_bytes counts one worker's share), and the
cache holds the data, the parameters, the optimizer's state and the partials in flight.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from trainer import capacity, ceilings
from trainer.parallel import shards, tree

if TYPE_CHECKING:
    from trainer.data.loader import Dataset
    from trainer.request import TrainingRequest
    from trainer.settings import Settings

# Optimizer state per parameter held beside the parameters (momentum: a velocity; adam: two moments).
STATE_SLOTS = {"gd": 0, "momentum": 1, "adam": 2}
# Steps the cache keeps (trainer.stores.reduction_store): the one a worker that rejoins starts from,
# the one being reduced, and the next, written by a worker that finished early.
IN_FLIGHT_STEPS = 3


def reduction_nodes(workers: int) -> int:
    """Tree nodes the workers send per step: one each when the workers divide the micro-shards
    evenly, more when a worker's block is not one aligned subtree."""
    return sum(len(tree.cover(shards.micro_shards_of(workers, w))) for w in range(workers))


def parameter_count(sizes: list[int] | tuple[int, ...]) -> int:
    return sum(sizes[i] * sizes[i - 1] + sizes[i] for i in range(1, len(sizes)))


def cache_bytes(data_bytes: int, sizes: list[int], itemsize: int, optimizer: str, workers: int) -> int:
    """Bytes a data-parallel run keeps in the cache: the data (every shard), the parameters and
    the optimizer's state, and each kept step's partial-gradient nodes, parameters and state. No activation
    goes through the cache: each worker keeps its micro-shards' in its own memory."""
    params = parameter_count(sizes)
    state = STATE_SLOTS[optimizer]
    slots = 1 + state + IN_FLIGHT_STEPS * (reduction_nodes(workers) + 1 + state)
    return data_bytes + itemsize * params * slots


def cache_needed(request: TrainingRequest, dataset: Dataset) -> int:
    """What the run needs in the cache: the chain's figure (capacity.needed_for) for one worker."""
    if request.workers == 1:
        return capacity.needed_for(request, dataset)
    data = sum(int(a.nbytes) for a in dataset.arrays().values())
    sizes = [dataset.features, *request.neuron_list()]
    return cache_bytes(data, sizes, np.dtype(request.dtype).itemsize, request.optimizer, request.workers)


def problems(request: TrainingRequest, examples: int, settings: Settings) -> list[str]:
    """What of the deployment's ceilings stops the run: the chain's plan (trainer.ceilings) for
    one worker; for `request.workers` workers, their concurrency, their shares of the data, and
    their steps and invocations (a step is one batch; each worker hands on like a fused chain)."""
    workers = request.workers
    if workers == 1:
        return ceilings.check_run(request, examples, settings.ceilings)
    found = []
    limit = settings.ceilings.concurrent_chains
    if workers > limit:
        found.append(
            f"workers: the {workers} workers of a data-parallel run must all run at once, more than this "
            f"deployment's ceiling of {limit} concurrent chains (the trainer's reserved concurrency, "
            "TRAINER_RESERVED_CONCURRENCY); use fewer workers"
        )
    if shards.fewest_held(examples, workers) == 0:
        enough = max(w for w in range(1, shards.MAX_WORKERS + 1) if shards.fewest_held(examples, w) > 0)
        found.append(
            f"workers: {workers} workers on {examples} training examples leave a worker none to hold "
            f"(a worker holds whole micro-shards, {shards.MICRO_SHARDS} cut from the examples in order); "
            f"the most workers that all hold some is {enough}"
        )
    batch = min(request.batch_size or examples, examples)
    steps = request.epochs * math.ceil(examples / max(1, batch))
    if steps > settings.ceilings.run_steps:
        found.append(
            f"steps: the run plans {steps:,} steps ({request.epochs:,} epochs x {steps // request.epochs:,} batches), "
            f"more than this deployment's ceiling of {settings.ceilings.run_steps:,} (MAX_RUN_STEPS); use fewer "
            "epochs or a larger batch_size"
        )
    calls = workers * math.ceil(steps / request.max_steps_per_invocation)
    if calls > settings.ceilings.run_invocations:
        found.append(
            f"invocations: {workers} workers need at least {calls:,} Lambda invocations ({steps:,} batches, "
            f"{request.max_steps_per_invocation} per invocation each), more than this deployment's ceiling of "
            f"{settings.ceilings.run_invocations:,} (MAX_RUN_INVOCATIONS); use fewer epochs or workers"
        )
    return found
