"""Starting a data-parallel run (LaunchLambda, after every check and the run's claim): the
training set in the cache cut into its micro-shards, so each worker reads only its own (or, when
the workers read the examples straight from the dataset object, trainer.data.direct, the labels'
micro-shards and the examples' place), the initial parameters under the chain's position -1, and
one event per worker.

The micro-shards' data keys do not depend on the number of workers; the test set and the
normalisation statistics are stored once, under the chain's names, for the finish.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer import runstart
from trainer.data import direct
from trainer.parallel import shards

WORKER_STATE = "dp_worker"  # the trainer's events for a data-parallel worker carry this state


def x_name(k: int) -> str:
    return f"dp_x{k}"


def y_name(k: int) -> str:
    return f"dp_y{k}"


# The data entry recording where the training examples lie in the dataset object, when the
# workers read them from there (trainer.data.direct): in the cache in place of the x micro-shards.
SOURCE = "dp_source"


def shard_arrays(arrays: dict[str, np.ndarray], examples: int, compact: bool) -> dict[str, np.ndarray]:
    """Micro-shard k's examples of the training set, as the launch stores the set: raw integers
    examples first (`compact`), or normalised in column layout; only the labels when the arrays
    have no x_train (the workers read it from the dataset object)."""
    x, y = arrays.get("x_train"), arrays["y_train"]
    rows = compact
    cut = shards.bounds(examples, shards.MICRO_SHARDS)
    out = {}
    for k in range(shards.MICRO_SHARDS):
        lo, hi = cut[k], cut[k + 1]
        if x is not None:
            out[x_name(k)] = np.ascontiguousarray(x[lo:hi] if rows else x[:, lo:hi])
        out[y_name(k)] = np.ascontiguousarray(y[:, lo:hi])
    return out


def place_array(place: direct.Place) -> np.ndarray:
    """The place as a data entry (the cache's values are arrays): its JSON's bytes."""
    return np.frombuffer(place.to_json().encode(), dtype=np.uint8)


def place_of(array: np.ndarray) -> direct.Place:
    return direct.Place.from_json(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def data_arrays(dataset: Any) -> dict[str, np.ndarray]:
    """What a data-parallel run keeps of its dataset in the cache: the micro-shards (or, when the
    workers read the training examples from the dataset object, the labels' micro-shards and the
    place of the examples), the test set and statistics for the finish, and the validation examples
    of a run that holds some out (the launch's, and a resume's when the cache lost them)."""
    arrays = dataset.arrays()
    # The held-out examples (validation_fraction) whole: one worker scores them at a time.
    finish = {name: arrays[name] for name in ("x_test", "y_test", "shift", "scale", "x_val", "y_val") if name in arrays}
    place = {} if dataset.x_train_at is None else {SOURCE: place_array(dataset.x_train_at)}
    return {**shard_arrays(arrays, dataset.examples, dataset.compact), **place, **finish}


def has_data(store: Any, run_id: str) -> bool:
    """Whether the cache still holds the run's micro-shards (a flushed node does not): the labels'
    are there on either path, in the same transaction as the rest."""
    return bool(store.has_data(run_id, y_name(0)))


def put_state(svc: Any, request: Any, dataset: Any, config: Any) -> bool:
    """The micro-shards, the test set and statistics, and the initial parameters; False when the
    run's state is there already (a retried launch)."""
    svc.tensor_store.put_data(config.run_id, data_arrays(dataset))
    return svc.tensor_store.create_run(config.run_id, config.to_json(), runstart.initial_tensors(config, request.init))


def worker_event(run_id: str, worker: int, generation: int = 0, resumes: int = 0) -> dict[str, Any]:
    """A worker's event; `generation` counts its invocations' hand-ons (the launch's and a
    resume's are 0), `resumes` the run's resumes when it was sent (absent: 0, the launch's)."""
    event = {"state": WORKER_STATE, "run_id": run_id, "worker": worker, "gen": generation}
    return {**event, "resumes": resumes} if resumes else event


def worker_events(run_id: str, workers: int, resumes: int = 0) -> list[dict[str, Any]]:
    return [worker_event(run_id, w, resumes=resumes) for w in range(workers)]


def first_hops(svc: Any, config: Any, resumes: int = 0) -> None:
    for event in worker_events(config.run_id, config.workers, resumes):
        svc.invoker.invoke_async(event)
