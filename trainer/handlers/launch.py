"""LaunchLambda: validate the request, load the data, initialise, record the run, start the chain.

Nothing is written anywhere until every check has passed.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from trainer import capacity, lifecycle
from trainer import request as request_mod
from trainer import services as services_mod
from trainer.data.loader import DatasetError, check_raw, load_raw, prepare
from trainer.errors import RequestError, RunNotFound
from trainer.logs import get_logger
from trainer.nn import optimizers
from trainer.nn.init import initialise
from trainer.runconfig import RunConfig
from trainer.statemachine import first_event
from trainer.vocabulary import RunStatus

logger = get_logger("lnn-launch")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def validate(payload: Any, svc: services_mod.Services):
    """(request, dataset) or RequestError listing every problem."""
    request, problems = request_mod.parse(payload)
    source = payload.get("dataset") if isinstance(payload, dict) else None
    dataset = None
    if isinstance(source, str) and source:
        try:
            raw = load_raw(source, svc.blob_store.read, allowed_bucket=svc.settings.model_bucket)
            raw_problems = check_raw(raw)
            problems += [f"dataset: {p}" for p in raw_problems]
            if not raw_problems:
                dataset = prepare(
                    raw, request.normalize if request else "auto", request.dtype if request else "float64"
                )
        except DatasetError as exc:
            problems.append(f"dataset: {exc}")
        except Exception as exc:  # an S3 error (no such key, access denied) names the problem too
            problems.append(f"dataset: cannot read {source!r} ({type(exc).__name__}: {exc})")
    if request is not None and dataset is not None:
        problems += request_mod.check_against_data(
            request, dataset.features, dataset.examples, dataset.classes, svc.settings.memory_mb
        )
        problems += capacity.check(capacity.needed_for(request, dataset), svc.settings.cache_capacity_mib)
    if request is not None:
        problems += request_mod.check_against_trainer(request, svc.settings.trainer_timeout_s)
    if (
        request is not None
        and request.run_id
        and (svc.tensor_store.exists(request.run_id) or svc.run_store.exists(request.run_id))
    ):
        problems.append(f"run_id: a run {request.run_id!r} already exists")
    if problems:
        raise RequestError(problems)
    return request, dataset


def launch(payload: Any, svc: services_mod.Services) -> dict[str, Any]:
    request, dataset = validate(payload, svc)
    run_id = request.run_id or new_run_id()
    config = RunConfig(
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
    )
    params = initialise(list(config.sizes), request.init, request.seed, request.dtype)
    state = optimizers.initial_state(request.optimizer, params, config.layers)
    svc.tensor_store.put_data(run_id, dataset.arrays())
    if not svc.tensor_store.create_run(run_id, config.to_json(), {**params, **state}):
        raise RequestError([f"run_id: a run {run_id!r} already exists"])
    svc.run_store.create_run(run_id, request.model_dump(mode="json"), config.to_json(), config.plan.total_steps)
    try:
        svc.invoker.invoke_async(first_event(run_id).to_dict())
    except Exception as exc:
        svc.run_store.mark_failed(run_id, f"could not start the trainer: {exc}", "launch", type(exc).__name__)
        raise
    logger.info("run launched", extra={"run_id": run_id, "total_steps": config.plan.total_steps})
    return {
        "run_id": run_id,
        "status": RunStatus.RUNNING,
        "epochs": config.epochs,
        "layers": config.layers,
        "total_steps": config.plan.total_steps,
        "examples": config.examples,
    }


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point: adapters built from the environment once per execution environment."""
    return run(event, context, services_mod.current())


def run(event: Any, context: Any, svc: services_mod.Services) -> dict[str, Any]:
    """A training request, or {"action": "resume" | "cancel", "run_id": ...}."""
    if isinstance(event, dict) and "action" in event:
        action, extra = event.get("action"), sorted(set(event) - {"action", "run_id"})
        if action not in ("resume", "cancel") or extra:
            problems = (
                [f"action: {action!r} is not one of resume, cancel"] if action not in ("resume", "cancel") else []
            )
            problems += [f"{k}: unknown field" for k in extra]
            raise RequestError(problems)
        try:
            return (lifecycle.resume if action == "resume" else lifecycle.cancel)(svc, event.get("run_id"))
        except RunNotFound as exc:
            raise RequestError([f"run_id: {exc}"]) from exc
    return launch(event, svc)
