"""Starting a run: its config from a validated request and dataset, its initial state in the cache,
its record, and the first event. Shared by LaunchLambda (a run) and the sweep scheduler (a trial)."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer import schema
from trainer.data.loader import Dataset, load_raw, prepare, read_located
from trainer.data.split import carve, validation_indices
from trainer.nn import optimizers
from trainer.nn.init import initialise
from trainer.request import TrainingRequest
from trainer.runconfig import RunConfig
from trainer.statemachine import first_event
from trainer.stores.records import RunItem

if TYPE_CHECKING:
    from trainer.services import Services


def load_data(
    svc: Services,
    source: str,
    normalize: str,
    dtype: str,
    split_key: str | None = None,
    validation_fraction: float = 0.0,
    seed: int = 0,
    workers: int = 1,
) -> Dataset:
    """A run's data as its start prepares it, and its resume again: the source, less the held-out
    examples of the validation split stored at `split_key` (a sweep's trial), or drawn again from
    `validation_fraction` and `seed` (a run's own), which are then its validation examples. Kept in
    one place so that a resumed run gets the same data (and so the same digest) as its start did. A
    data-parallel run (`workers`) whose workers read the training examples from the object gets
    their place again (pinned to the object's ETag, in the digest) instead of their bytes."""
    settings = svc.settings
    if split_key is None:
        located = read_located(
            source,
            svc.blob_store,
            settings.model_bucket,
            settings.dataset_prefix,
            normalize,
            validation_fraction,
            workers,
        )
        if located is not None:  # its workers read the training examples from the object
            return prepare(located[0], normalize, dtype, None, located[1])
    raw = load_raw(source, svc.blob_store.read, settings.model_bucket, settings.dataset_prefix)
    held = None
    if split_key is not None:
        with np.load(io.BytesIO(svc.blob_store.get(split_key)), allow_pickle=False) as stored:
            raw, held = carve(raw, stored["validation"])
    elif validation_fraction:
        raw, held = carve(raw, validation_indices(raw["train_set_x"].shape[0], validation_fraction, seed))
    return prepare(raw, normalize, dtype, held)


def config_for(request: TrainingRequest, dataset: Dataset, run_id: str, **sweep: Any) -> RunConfig:
    """The run's fixed configuration (`sweep`: sweep_id, trial, rungs and reduction_factor of a
    sweep's trial)."""
    return RunConfig(
        run_id=run_id,
        sizes=(dataset.features, *request.neuron_list()),
        activations=tuple(request.activation_list()),
        optimizer=request.optimizer,
        learning_rate=request.learning_rate,
        l2=request.l2,
        batch_size=min(request.batch_size or dataset.examples, dataset.examples),
        examples=dataset.examples,
        epochs=request.epochs,
        seed=request.seed,
        dtype=request.dtype,
        classes=dataset.classes,
        chain=request.chain,
        max_steps_per_invocation=request.max_steps_per_invocation,
        time_margin_ms=request.time_margin_ms,
        notify_every=request.notify_every,
        checkpoint_every=request.checkpoint_every,
        data_digest=dataset.digest(),
        dataset=request.dataset,
        validation_fraction=request.validation_fraction,
        workers=request.workers,
        **sweep,
    )


def put_state(svc: Services, request: TrainingRequest, dataset: Dataset, config: RunConfig) -> bool:
    """The data and the initial parameters in the cache; False when the run's state is there already.
    Only for a run this caller owns (its record claimed, or a sweep's trial id): the data goes in
    before the state is created, so it is the caller's data either way."""
    svc.tensor_store.put_data(config.run_id, dataset.arrays())
    return svc.tensor_store.create_run(config.run_id, config.to_json(), initial_tensors(config, request.init))


def initial_tensors(config: RunConfig, init: str) -> dict[str, np.ndarray]:
    """The run's parameters and optimizer state before its first step: drawn from its seed, so a
    resume with no checkpoint yet starts again from exactly these."""
    params = initialise(list(config.sizes), init, config.seed, config.dtype)
    return {**params, **optimizers.initial_state(config.optimizer, params, config.layers)}


def record(svc: Services, request: TrainingRequest, config: RunConfig) -> bool:
    """Claim the run id with the run's record; False when the id is taken."""
    return svc.run_store.create_run(config.run_id, schema.to_json(request), config.to_json(), config.plan.total_steps)


def same_launch(run: RunItem, request: TrainingRequest, config: RunConfig) -> bool:
    """Whether a stored run is this request's own launch: the same request, the same data."""
    return (
        run.get("request") == json.dumps(schema.to_json(request), sort_keys=True)
        and run.get("config") == config.to_json()
    )


def first_hop(svc: Services, run_id: str) -> None:
    svc.invoker.invoke_async(first_event(run_id).to_dict())
