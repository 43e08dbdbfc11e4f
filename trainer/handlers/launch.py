"""LaunchLambda: validate the request, load the data, claim the run id, initialise, start the chain.

Nothing is written anywhere until every check has passed, and nothing but the run's record until
that record has claimed the run id: a launch refused because its id is taken writes nothing.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from trainer import admission, capacity, lifecycle, runstart
from trainer import request as request_mod
from trainer import services as services_mod
from trainer.data.loader import Dataset, DatasetError, prepare, read_checked, read_checked_located
from trainer.data.split import SplitError, carve, validation_indices
from trainer.entrypoint import lambda_handler
from trainer.errors import RequestError, RunNotFound
from trainer.logs import get_logger
from trainer.parallel import launching
from trainer.parallel.admission import cache_needed
from trainer.stores.run_store import HANDOFF, Handoff
from trainer.sweep import scheduler
from trainer.vocabulary import RunStatus

logger = get_logger("lnn-launch")

ACTIONS = ("resume", "cancel", "sweep")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def validate(payload: Any, svc: services_mod.Services) -> tuple[request_mod.TrainingRequest, Dataset]:
    """(request, dataset) or RequestError listing every problem."""
    request, problems = request_mod.parse(payload)
    source = payload.get("dataset") if isinstance(payload, dict) else None
    located, raw_problems = _located(source, request, svc)
    raw, place = located if located is not None else (None, None)
    if located is None and not raw_problems:
        raw, raw_problems = read_checked(
            source, svc.blob_store.read, svc.settings.model_bucket, svc.settings.dataset_prefix
        )
    problems += raw_problems
    dataset = None
    if raw is not None:
        raw, held = _held_out(raw, payload, request, problems)
        try:
            normalize, dtype = (request.normalize, request.dtype) if request else ("auto", "float64")
            dataset = prepare(raw, normalize, dtype, held, place)
        except DatasetError as exc:
            problems.append(f"dataset: {exc}")
    if request is not None:
        problems += admission.problems(request, dataset, svc.settings)
    if request is not None and dataset is not None:
        problems += capacity.check(cache_needed(request, dataset), svc.settings.cache_capacity_mib)
    if request is not None and request.run_id and _taken(svc, request.run_id):
        problems.append(f"run_id: a run {request.run_id!r} already exists")
    if problems or request is None or dataset is None:  # either is None only with its problem listed
        raise RequestError(problems)
    return request, dataset


def _located(source: object, request: request_mod.TrainingRequest | None, svc: services_mod.Services) -> Any:
    """A data-parallel run's dataset less its training examples' bytes, which its workers read
    from the object (trainer.data.direct), and their place; (None, []) when the set is read whole."""
    if request is None:
        return None, []
    settings = svc.settings
    return read_checked_located(
        source,
        svc.blob_store,
        settings.model_bucket,
        settings.dataset_prefix,
        request.normalize,
        request.validation_fraction,
        request.workers,
    )


def _held_out(
    raw: dict[str, Any], payload: Any, request: Any, problems: list[str]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The training set less the examples `validation_fraction` holds out, and those examples (as a
    sweep carves its split); a split that leaves either side empty is one more problem, found even
    when the request has others (how many examples each side gets does not depend on the seed)."""
    if request is not None:
        fraction, seed = request.validation_fraction, request.seed
    else:
        fraction, seed = (payload.get("validation_fraction") if isinstance(payload, dict) else None), 1
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
            fraction = 0.0  # absent, or a problem the schema reports
    if not fraction:
        return raw, None
    try:
        indices = validation_indices(raw["train_set_x"].shape[0], fraction, seed)
    except SplitError as exc:
        problems.append(f"validation_fraction: {str(exc).removeprefix('validation_fraction ')}")
        return raw, None
    return carve(raw, indices)


def _taken(svc: services_mod.Services, run_id: str) -> bool:
    """The id is some run's already, and not one whose launch may be being retried (the claim, in
    `launch`, has the last word: this check only lists the problem with the request's others)."""
    try:
        run = svc.run_store.get_run(run_id)
    except RunNotFound:
        return svc.tensor_store.exists(run_id)  # cache state nobody's record owns: not to be mixed in
    return run.get(HANDOFF) != Handoff.LAUNCH


def launch(payload: Any, svc: services_mod.Services) -> dict[str, Any]:
    request, dataset = validate(payload, svc)
    run_id = request.run_id or new_run_id()
    config = runstart.config_for(request, dataset, run_id)
    if not runstart.record(svc, request, config) and not _retry_of_unfinished_launch(svc, request, config):
        raise RequestError([f"run_id: a run {run_id!r} already exists"])
    parallel = config.workers > 1
    # False: this launch's earlier attempt put it
    (launching.put_state if parallel else runstart.put_state)(svc, request, dataset, config)
    try:
        if parallel:
            launching.first_hops(svc, config)  # one event per worker
        else:
            runstart.first_hop(svc, run_id)
    except Exception as exc:
        svc.run_store.mark_failed(
            run_id, f"could not start the trainer: {exc}", "launch", type(exc).__name__, Handoff.LAUNCH
        )
        raise
    svc.run_store.handed_off(run_id)
    logger.info("run launched", extra={"run_id": run_id, "total_steps": config.plan.total_steps})
    return {
        "run_id": run_id,
        "status": RunStatus.RUNNING,
        "epochs": config.epochs,
        "layers": config.layers,
        "total_steps": config.plan.total_steps,
        "examples": config.examples,
    }


def _retry_of_unfinished_launch(svc: services_mod.Services, request: Any, config: Any) -> bool:
    """The same request sent again for a run whose launch died before its first event went out: the
    retry completes that hand-off. (A repeat of the first event, if the first attempt did send it,
    is a duplicate the chain ignores.)"""
    run = svc.run_store.get_run(config.run_id)
    return (
        run["status"] == RunStatus.RUNNING
        and run.get(HANDOFF) == Handoff.LAUNCH
        and runstart.same_launch(run, request, config)
    )


@lambda_handler("lnn-launch")
def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point: adapters built from the environment once per execution environment."""
    return run(event, context, services_mod.current())


def run(event: Any, context: Any, svc: services_mod.Services) -> dict[str, Any]:
    """A training request, a sweep ({"action": "sweep", ...}), or {"action": "resume" | "cancel",
    "run_id": ...} / {"action": "cancel", "sweep_id": ...}; a resume may set the seconds without a
    step after which a RUNNING run counts as STALLED ("stall_after_s", 1800 by default)."""
    if not isinstance(event, dict) or "action" not in event:
        return launch(event, svc)
    action = event.get("action")
    if action == "sweep":
        return scheduler.launch(event, svc)
    target = "sweep_id" if action == "cancel" and "sweep_id" in event else "run_id"
    options = {"stall_after_s"} if action == "resume" else set()
    extra = sorted(set(event) - {"action", target} - options)
    problems = [] if action in ACTIONS else [f"action: {action!r} is not one of {', '.join(ACTIONS)}"]
    problems += [f"{k}: unknown field" for k in extra]
    # A refusal is named for what was asked: "invalid cancel request", not "invalid training request".
    what = f"{action} request" if action in ACTIONS else "request"
    if problems:
        raise RequestError(problems, what)
    try:
        if target == "sweep_id":
            return scheduler.cancel(svc, event.get("sweep_id"))
        if action == "resume":
            stall_after_s = event.get("stall_after_s", lifecycle.DEFAULT_STALL_AFTER_S)
            return lifecycle.resume(svc, event.get("run_id"), stall_after_s)
        return lifecycle.cancel(svc, event.get("run_id"))
    except RunNotFound as exc:
        raise RequestError([f"run_id: {exc}"], what) from exc
    except RequestError as exc:
        raise RequestError(exc.problems, what) from exc
