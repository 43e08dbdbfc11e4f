"""A sweep's checks: the whole sweep and every trial, before anything is written. Each problem is
named once, with the trials that have it; the trials are checked against the data and the stack's
settings as a run's launch is (trainer.admission)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer import admission, capacity, ceilings, schema
from trainer import request as request_mod
from trainer.data.loader import Dataset, DatasetError, prepare, read_checked
from trainer.data.split import SplitError, carve, validation_indices
from trainer.errors import RequestError
from trainer.parallel import admission as parallel_admission
from trainer.stores.records import SweepItem
from trainer.stores.sweep_store import request_of
from trainer.sweep import space

if TYPE_CHECKING:
    from trainer.services import Services


def trial_run_id(sweep_id: str, trial: int) -> str:
    return f"{sweep_id}-t{trial:03d}"


MAX_REQUEST_BYTES = 300_000  # the request is stored in the sweep's item (DynamoDB: 400 KB an item)


@dataclass(frozen=True)
class Checked:
    """A sweep that passed every check, with what its launch writes."""

    sweep: space.SweepRequest
    trials: list[dict[str, Any]]  # {"trial", "params", "request"}
    indices: np.ndarray
    dataset: Dataset


# -- validation: the whole sweep, every trial, before anything is written -------------------------
def _trial_problems(requests: list[dict[str, Any]]) -> tuple[list[request_mod.TrainingRequest | None], list[str]]:
    """Each trial's parsed request, and every problem, once, naming the trials that have it."""
    parsed: list[request_mod.TrainingRequest | None] = []
    found: list[tuple[int, list[str]]] = []
    for number, payload in enumerate(requests):
        request, problems = request_mod.parse(payload)
        parsed.append(request)
        found.append((number, problems))
    return parsed, _grouped(found, len(requests))


def _grouped(found: list[tuple[int, list[str]]], total: int) -> list[str]:
    """Each problem of (trial, its problems) once, in the order first met, naming the trials that
    have it: a sweep of many trials sharing one mistake gets one line for it, not one per trial."""
    where: dict[str, list[int]] = {}
    for number, problems in found:
        for problem in problems:
            where.setdefault(problem, []).append(number)
    return [_name_trials(trials, total) + problem for problem, trials in where.items()]


def _name_trials(trials: list[int], total: int) -> str:
    if len(trials) == total and total > 1:
        return f"every trial ({total}): "
    shown = ", ".join(str(t) for t in trials[:10]) + (", ..." if len(trials) > 10 else "")
    return f"trial{'s' if len(trials) > 1 else ''} {shown}: "


def validate(payload: Any, svc: Services) -> Checked:
    """The checked sweep, or RequestError listing every problem (of the sweep and of its trials)."""
    size = len(json.dumps(payload, default=str))
    if size > MAX_REQUEST_BYTES:
        raise RequestError([f"request: {size} bytes, more than {MAX_REQUEST_BYTES} (it is stored with the sweep)"])
    sweep, problems = space.parse(payload)
    if sweep is None:
        raise RequestError(problems, "sweep request")
    params = space.assignments(sweep)
    requests = [space.trial_request(sweep.base, p) for p in params]
    parsed, problems = _trial_problems(requests)
    # Every trial runs its workers at once (a trial without `workers` is one chain).
    workers = max((r.workers for r in parsed if r is not None), default=1)
    problems += ceilings.sweep_problems(len(requests), workers, sweep.max_concurrency, svc.settings.ceilings)
    dataset, indices = None, None
    raw, raw_problems = read_checked(
        sweep.base.get("dataset"), svc.blob_store.read, svc.settings.model_bucket, svc.settings.dataset_prefix
    )
    problems += raw_problems
    first = next((r for r in parsed if r is not None), None)  # normalize and dtype are the sweep's, not searched
    if raw is not None and first is not None:
        try:
            indices = validation_indices(raw["train_set_x"].shape[0], sweep.validation_fraction, sweep.seed)
            train, held = carve(raw, indices)
            dataset = prepare(train, first.normalize, first.dtype, held)
        except (DatasetError, SplitError) as exc:
            problems.append(f"dataset: {exc}")
    if dataset is not None:
        found: list[tuple[int, list[str]]] = []
        needs = []
        for number, request in enumerate(parsed):
            if request is None:
                continue
            trial_problems = admission.problems(request, dataset, svc.settings)
            if sweep.early_stopping and sweep.early_stopping.asha.min_epochs >= request.epochs:
                trial_problems.append(
                    f"early_stopping.asha.min_epochs: {sweep.early_stopping.asha.min_epochs} is not below the "
                    f"trial's {request.epochs} epochs, so it would never be judged"
                )
            found.append((number, trial_problems))
            needs.append(parallel_admission.cache_needed(request, dataset))
        problems += _grouped(found, len(parsed))
        at_once = sum(sorted(needs, reverse=True)[: sweep.max_concurrency])
        problems += [
            p.replace("the run needs", "the sweep's concurrent trials need")
            for p in capacity.check(at_once, svc.settings.cache_capacity_mib)
        ]
    if sweep.sweep_id and svc.run_store.sweep_exists(sweep.sweep_id):
        if not same_sweep(svc.run_store.get_sweep(sweep.sweep_id), sweep):
            problems.append(f"sweep_id: a different sweep {sweep.sweep_id!r} already exists")
    elif sweep.sweep_id:
        taken = [n for n in range(len(requests)) if svc.run_store.exists(trial_run_id(sweep.sweep_id, n))]
        if taken:
            problems.append(f"sweep_id: runs {', '.join(trial_run_id(sweep.sweep_id, n) for n in taken[:5])} exist")
    if problems:
        raise RequestError(problems, "sweep request")
    assert dataset is not None and indices is not None
    pairs = enumerate(zip(params, requests, strict=True))
    trials = [{"trial": n, "params": p, "request": r} for n, (p, r) in pairs]
    return Checked(sweep=sweep, trials=trials, indices=indices, dataset=dataset)


def same_sweep(stored: SweepItem, sweep: space.SweepRequest) -> bool:
    return request_of(stored) == json.loads(json.dumps(schema.to_json(sweep), sort_keys=True))
