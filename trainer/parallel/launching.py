"""Starting a data-parallel run (LaunchLambda, after every check and the run's claim): the
training set in the cache cut into its micro-shards, so each worker reads only its own, the
initial parameters under the chain's position -1, and one event per worker.

The micro-shards' data keys do not depend on the number of workers; the test set and the
normalisation statistics are stored once, under the chain's names, for the finish.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer import runstart
from trainer.parallel import shards

WORKER_STATE = "dp_worker"  # the trainer's events for a data-parallel worker carry this state


def x_name(k: int) -> str:
    return f"dp_x{k}"


def y_name(k: int) -> str:
    return f"dp_y{k}"


def shard_arrays(arrays: dict[str, np.ndarray], examples: int, compact: bool) -> dict[str, np.ndarray]:
    """Micro-shard k's examples of the training set, as the launch stores the set: raw integers
    examples first (`compact`), or normalised in column layout."""
    x, y = arrays["x_train"], arrays["y_train"]
    rows = compact
    cut = shards.bounds(examples, shards.MICRO_SHARDS)
    out = {}
    for k in range(shards.MICRO_SHARDS):
        lo, hi = cut[k], cut[k + 1]
        out[x_name(k)] = np.ascontiguousarray(x[lo:hi] if rows else x[:, lo:hi])
        out[y_name(k)] = np.ascontiguousarray(y[:, lo:hi])
    return out


def put_state(svc: Any, request: Any, dataset: Any, config: Any) -> bool:
    """The micro-shards, the test set and statistics, and the initial parameters; False when the
    run's state is there already (a retried launch)."""
    arrays = dataset.arrays()
    finish = {name: arrays[name] for name in ("x_test", "y_test", "shift", "scale")}
    svc.tensor_store.put_data(config.run_id, {**shard_arrays(arrays, dataset.examples, dataset.compact), **finish})
    return svc.tensor_store.create_run(config.run_id, config.to_json(), runstart.initial_tensors(config, request.init))


def worker_event(run_id: str, worker: int, generation: int = 0) -> dict[str, Any]:
    """A worker's event; `generation` counts its invocations' hand-ons (the launch's is 0)."""
    return {"state": WORKER_STATE, "run_id": run_id, "worker": worker, "gen": generation}


def worker_events(run_id: str, workers: int) -> list[dict[str, Any]]:
    return [worker_event(run_id, w) for w in range(workers)]


def first_hops(svc: Any, config: Any) -> None:
    for event in worker_events(config.run_id, config.workers):
        svc.invoker.invoke_async(event)
