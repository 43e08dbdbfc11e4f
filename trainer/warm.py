"""Read-only inputs of a run kept in memory by a warm execution environment: the run's config and
its training data, loaded once and then reused by every later invocation of the same run.

Both are written once at launch and never change: the data is keyed by the run and the digest
of its content, so a stale copy can never be used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from trainer import engine
from trainer.errors import ChainError
from trainer.runconfig import RunConfig

if TYPE_CHECKING:
    from trainer.services import Services

_configs: dict[str, RunConfig] = {}
_data: dict[tuple[str, str], engine.TrainData] = {}
_DATA_RUNS = 2  # a warm environment serves one run at a time, mostly; bound the memory anyway


def run_config(svc: Services, run_id: str) -> RunConfig:
    cached = _configs.get(run_id)
    if cached is None:
        text = svc.tensor_store.config(run_id)
        if text is None:
            raise ChainError(f"run {run_id!r} has no state in the cache (unknown run, or the cache lost it)")
        cached = _configs[run_id] = RunConfig.from_json(text)
    return cached


def training_data(svc: Services, config: RunConfig) -> engine.TrainData:
    key = (config.run_id, config.data_digest)
    cached = _data.get(key)
    if cached is None:
        names = ["x_train", "y_train", "x_test", "y_test", "shift", "scale"]
        arrays = svc.tensor_store.get_data(config.run_id, names + (["x_val", "y_val"] if config.validates else []))
        cached = engine.TrainData(**arrays)
        while len(_data) >= _DATA_RUNS:
            _data.pop(next(iter(_data)))
        _data[key] = cached
    return cached


def normalisation(svc: Services, config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) of the run's inputs, which travel with its model: from the training data this
    environment holds, or else read alone (a data-parallel run's finish holds no training set)."""
    cached = _data.get((config.run_id, config.data_digest))
    if cached is not None:
        return cached.shift, cached.scale
    stats = svc.tensor_store.get_data(config.run_id, ["shift", "scale"])
    return stats["shift"], stats["scale"]


def cached_data_keys() -> list[tuple[str, str]]:
    return list(_data)
