"""The sweep request: its schema, and the trials its search space expands into.

Pure: no I/O. A trial is the base request with some fields replaced; which fields, and by which
values, is the search space. The same request always gives the same trials (a seeded generator
for `random`, the product in the request's key order for `grid`).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from trainer import request as request_mod
from trainer import schema

MAX_TRIALS = 1000
SWEEP_ID_LONGEST = 56  # shorter than a run id: room for its trials' ids ("<sweep_id>-t000")
# The fields a trial may vary. The dataset, its normalisation and dtype are the sweep's (one
# validation split for all); the chain's mechanics do not change what is learned.
SEARCHABLE = ("learning_rate", "optimizer", "batch_size", "l2", "seed", "init", "epochs")
LAYER_FIELDS = ("neurons", "activations")
# The base's fields a sweep decides itself.
NOT_IN_BASE = {
    "run_id": "each trial's run id is the sweep's id and its number",
    "notify_every": "a sweep sends one summary, not messages per trial",
    "validation_fraction": "the sweep's own validation_fraction holds out one split for every trial",
}
DEFAULT_MAX_CONCURRENCY = 4  # a new AWS account runs only 10 executions at once, in all


class Asha(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    min_epochs: Annotated[int, Meta(ge=1, le=request_mod.MAX_EPOCHS)]
    reduction_factor: Annotated[int, Meta(ge=2, le=100)] = 3


class EarlyStopping(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    asha: Asha


class SweepRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a user asks a sweep to search (the `base` and `space` are checked separately, trial by trial)."""

    action: Literal["sweep"] = "sweep"
    base: dict[str, Any]
    space: dict[str, Any]
    strategy: Literal["grid", "random"]
    trials: Annotated[int, Meta(ge=1, le=MAX_TRIALS)] | None = None
    seed: Annotated[int, Meta(ge=0, le=2**32 - 1)] = 1
    max_concurrency: Annotated[int, Meta(ge=1, le=1000)] = DEFAULT_MAX_CONCURRENCY
    # The bounds also refuse NaN and the infinities.
    validation_fraction: Annotated[float, Meta(gt=0, lt=1)] = 0.2
    metric: Literal["validation_accuracy"] = "validation_accuracy"
    early_stopping: EarlyStopping | None = None
    sweep_id: Annotated[str, Meta(max_length=SWEEP_ID_LONGEST)] | None = None


def _dimension_problems(key: str, values: Any, strategy: str) -> list[str]:
    where = f"space.{key}"
    head, _, layer = key.partition(".")
    if layer:
        if head not in LAYER_FIELDS or not request_mod.LAYER_KEY.match(layer):
            return [f"{where}: a dotted key must be neurons.layerN or activations.layerN"]
    elif key not in SEARCHABLE:
        return [f"{where}: cannot be searched (one of {', '.join(SEARCHABLE)}, neurons.layerN, activations.layerN)"]
    if isinstance(values, list):
        if not values:
            return [f"{where}: an empty list of values: nothing to try"]
        if any(isinstance(v, (dict, list)) for v in values):
            return [f"{where}: values must be numbers, strings or null"]
        return []
    if isinstance(values, dict) and len(values) == 1:
        ((kind, bounds),) = values.items()
        if kind not in ("uniform", "log_uniform"):
            return [f"{where}: {kind!r} is not a distribution (uniform, log_uniform, or a list of values)"]
        if strategy == "grid":
            return [f"{where}: a grid needs a list of values, not a {kind} distribution"]
        ok = (
            isinstance(bounds, list)
            and len(bounds) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
        )
        if not ok or not bounds[0] < bounds[1]:
            return [f"{where}: {kind} needs [low, high] with low < high"]
        if kind == "log_uniform" and bounds[0] <= 0:
            return [f"{where}: log_uniform needs low > 0"]
        return []
    return [f'{where}: must be a list of values or {{"uniform" | "log_uniform": [low, high]}}']


def parse(payload: Any) -> tuple[SweepRequest | None, list[str]]:
    """The sweep request and every problem with its shape (the trials are checked by `trials`)."""
    if not isinstance(payload, dict):
        return None, [f"request: must be a JSON object, got {type(payload).__name__}"]
    problems = schema.problems(payload, SweepRequest, {"sweep_id": request_mod.id_check(SWEEP_ID_LONGEST)})
    # The space and base are read as far as they can be, so that one round names every problem.
    base, dimensions = payload.get("base"), payload.get("space")
    strategy = str(payload.get("strategy")) if payload.get("strategy") in ("grid", "random") else "random"
    if isinstance(base, dict):
        problems += [f"base.{k}: {why}" for k, why in NOT_IN_BASE.items() if k in base]
    if isinstance(dimensions, dict):
        if not dimensions:
            problems.append("space: no dimension to search")
        for key, values in dimensions.items():
            problems += _dimension_problems(key, values, strategy)
    if payload.get("strategy") == "random" and payload.get("trials") is None:
        problems.append("trials: a random sweep needs the number of trials")
    if problems:
        return None, problems + _base_problems(base, dimensions)
    sweep = schema.convert(payload, SweepRequest)
    if sweep.strategy == "random":
        problems += value_problems(sweep)
    if sweep.strategy == "grid" and not problems:
        size = math.prod(len(v) for v in sweep.space.values())
        if sweep.trials is not None and sweep.trials != size:
            problems.append(f"trials: the grid has {size} points; leave trials out or give {size}")
        if size > MAX_TRIALS:
            problems.append(f"space: the grid has {size} points, more than {MAX_TRIALS}")
    return (sweep if not problems else None), problems


def _base_problems(base: Any, dimensions: Any) -> list[str]:
    """The base request's own problems, found now rather than in a second round; a field the
    space supplies is not missing from the base."""
    if not isinstance(base, dict):
        return []
    searched = {str(k).partition(".")[0] for k in dimensions} if isinstance(dimensions, dict) else set()
    _, problems = request_mod.parse(base)
    return [f"base.{p}" for p in problems if p.partition(":")[0].partition(".")[0] not in searched]


def value_problems(sweep: SweepRequest) -> list[str]:
    """A random sweep draws only some of its values; each one it could draw must be valid, or
    whether the sweep is refused would depend on the seed. Each listed value, and each end of a
    distribution, is put into the base alone; what that adds to the base's own problems is its own."""
    _, of_base = request_mod.parse(sweep.base)
    found = []
    for key, values in sweep.space.items():
        candidates = values if isinstance(values, list) else next(iter(values.values()))
        for value in candidates:
            _, problems = request_mod.parse(trial_request(sweep.base, {key: value}))
            found += [f"space.{key}: value {value!r}: {p}" for p in problems if p not in of_base]
    return found


def _sample(rng: random.Random, values: Any) -> Any:
    if isinstance(values, list):
        return values[rng.randrange(len(values))]
    ((kind, (low, high)),) = values.items()
    if kind == "log_uniform":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    return rng.uniform(low, high)


def assignments(sweep: SweepRequest) -> list[dict[str, Any]]:
    """Each trial's values of the searched fields, in trial order."""
    keys = list(sweep.space)
    if sweep.strategy == "grid":
        return [dict(zip(keys, point, strict=True)) for point in itertools.product(*sweep.space.values())]
    rng = random.Random(sweep.seed)
    return [{key: _sample(rng, sweep.space[key]) for key in keys} for _ in range(sweep.trials or 0)]


def trial_request(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The base request with the trial's values put in (a dotted key names a layer's field)."""
    out = copy.deepcopy(base)
    for key, value in params.items():
        head, _, layer = key.partition(".")
        if layer:
            mapping = out.get(head)
            out[head] = {**mapping, layer: value} if isinstance(mapping, dict) else {layer: value}
        else:
            out[key] = value
    return out


def describe(params: dict[str, Any]) -> str:
    """A trial's values for people: `learning_rate=0.0123, optimizer=adam`."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
