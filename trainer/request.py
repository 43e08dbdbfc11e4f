"""The training request: schema, defaults, and validation that reports every problem at once."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from trainer import schema
from trainer.nn import footprint
from trainer.nn.activations import ALL_ACTIVATIONS, HIDDEN_ACTIVATIONS, OUTPUT_ACTIVATIONS
from trainer.nn.optimizers import OptimizerName
from trainer.parallel.shards import MAX_WORKERS, held_examples, micro_shard_examples

# \Z, not $: "$" also matches before a trailing newline, which must not pass as a run id.
RUN_ID_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
RUN_ID_LONGEST = 64
LAYER_KEY = re.compile(r"\Alayer([1-9][0-9]*)\Z")
MAX_EPOCHS = 1_000_000
MAX_NEURONS = 1_000_000
MAX_LAYERS = 64


class TrainingRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a user asks LNN to train. Only the first five fields are required. Checked strictly
    (`schema.problems`): JSON true/false or "3" is not a number here; a request says what it means."""

    dataset: Annotated[str, Meta(min_length=1, max_length=1024)]
    neurons: dict[str, Any]
    activations: dict[str, Any]
    epochs: Annotated[int, Meta(ge=1, le=MAX_EPOCHS)]
    learning_rate: Annotated[float, Meta(gt=0, le=10)]
    optimizer: OptimizerName = "gd"
    batch_size: Annotated[int, Meta(ge=1, le=10_000_000)] | None = None
    l2: Annotated[float, Meta(ge=0, le=1000)] = 0.0
    seed: Annotated[int, Meta(ge=0, le=2**32 - 1)] = 1
    init: Literal["scaled_normal", "he", "xavier"] = "scaled_normal"
    normalize: Literal["auto", "none", "minmax", "standardize"] = "auto"
    dtype: Literal["float64", "float32"] = "float64"
    chain: Literal["fused", "per_step"] = "fused"
    max_steps_per_invocation: Annotated[int, Meta(ge=1, le=1_000_000)] = 2000
    time_margin_ms: Annotated[int, Meta(ge=1_000, le=600_000)] = 15_000
    notify_every: Annotated[int, Meta(ge=0, le=MAX_EPOCHS)] = 0
    checkpoint_every: Annotated[int, Meta(ge=0, le=MAX_EPOCHS)] = 250
    # The share of the training set held out (seeded by `seed`) and scored every epoch; 0 = none.
    validation_fraction: Annotated[float, Meta(ge=0, lt=1)] = 0.0
    run_id: str | None = None
    # Data-parallel workers (trainer/parallel): 1 is the one chain. The bound is the micro-shards'
    # count, which every worker count shares to the same bits.
    workers: Annotated[int, Meta(ge=1, le=MAX_WORKERS)] = 1

    @property
    def layers(self) -> int:
        return len(self.neurons)

    def neuron_list(self) -> list[int]:
        return [int(self.neurons[f"layer{i}"]) for i in range(1, self.layers + 1)]

    def activation_list(self) -> list[str]:
        return [str(self.activations[f"layer{i}"]) for i in range(1, self.layers + 1)]


def id_problem(value: Any, longest: int) -> str | None:
    """What is wrong with a run or sweep id, if anything (a sweep's is shorter: its trials' ids
    append "-t000")."""
    if isinstance(value, str) and len(value) <= longest and RUN_ID_PATTERN.match(value):
        return None
    return f"must be 1-{longest} letters, digits, '-' or '_', starting with a letter or digit"


def id_check(longest: int) -> schema.Check:
    """The request field's check: an id left out is fine (the launch makes one)."""
    return lambda value: None if value is None else id_problem(value, longest)


# The bounds also refuse NaN and the infinities, which the Lambda runtime's JSON parser accepts.
CHECKS: dict[str, schema.Check] = {"run_id": id_check(RUN_ID_LONGEST)}


def _layer_problems(payload: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    neurons, activations = payload.get("neurons"), payload.get("activations")
    if not isinstance(neurons, dict) or not isinstance(activations, dict):
        return problems  # the schema check reports the wrong type
    for name, mapping in (("neurons", neurons), ("activations", activations)):
        numbers = []
        for key in mapping:
            match = LAYER_KEY.match(str(key))
            if not match:
                problems.append(f"{name}: key {key!r} is not of the form layerN")
            else:
                numbers.append(int(match.group(1)))
        if numbers and sorted(numbers) != list(range(1, len(numbers) + 1)):
            problems.append(f"{name}: layer keys must run layer1..layer{len(numbers)} without gaps")
        if not mapping:
            problems.append(f"{name}: at least one layer is required")
        if len(mapping) > MAX_LAYERS:
            problems.append(f"{name}: at most {MAX_LAYERS} layers")
    if set(neurons) != set(activations):
        problems.append(
            "neurons and activations must name the same layers "
            f"(neurons: {sorted(neurons)}, activations: {sorted(activations)})"
        )
    for key, value in neurons.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_NEURONS:
            problems.append(f"neurons.{key}: must be a positive integer (at most {MAX_NEURONS}), got {value!r}")
    count = len(activations)
    for key, value in activations.items():
        if value not in ALL_ACTIVATIONS:
            problems.append(
                f"activations.{key}: unknown activation {value!r} (expected one of {', '.join(ALL_ACTIVATIONS)})"
            )
            continue
        is_output = key == f"layer{count}"
        if is_output and value not in OUTPUT_ACTIVATIONS:
            problems.append(f"activations.{key}: the output layer must be sigmoid or softmax, not {value!r}")
        if not is_output and value not in HIDDEN_ACTIVATIONS:
            problems.append(f"activations.{key}: {value!r} is only allowed on the output layer")
    return problems


def parse(payload: Any) -> tuple[TrainingRequest | None, list[str]]:
    """The request and the list of problems with it that need no data to find."""
    if not isinstance(payload, dict):
        return None, [f"request: must be a JSON object, got {type(payload).__name__}"]
    if {"space", "base", "strategy"} <= payload.keys() and "action" not in payload:
        # Without its action a sweep is read as a training request, and every problem would be beside the point.
        return None, ['action: this looks like a sweep (it has base, space and strategy): add "action": "sweep"']
    problems = schema.problems(payload, TrainingRequest, CHECKS) + _layer_problems(payload)
    return (None if problems else schema.convert(payload, TrainingRequest)), problems


def check_against_data(
    request: TrainingRequest, features: int, examples: int, classes: int, memory_mb: int
) -> list[str]:
    """Problems that only the loaded dataset reveals."""
    problems: list[str] = []
    sizes = request.neuron_list()
    output, activation = sizes[-1], request.activation_list()[-1]
    if activation == "sigmoid":
        if output != 1:
            problems.append(f"neurons.layer{request.layers}: a sigmoid output layer needs 1 neuron, got {output}")
        if classes > 2:
            problems.append(
                f"activations.layer{request.layers}: labels have {classes} classes; use softmax with {classes} neurons"
            )
    elif output != classes:
        problems.append(
            f"neurons.layer{request.layers}: a softmax output layer needs one neuron per class "
            f"({classes} in the labels), got {output}"
        )
    if request.batch_size is not None and request.batch_size > examples:
        problems.append(f"batch_size: {request.batch_size} is larger than the {examples} training examples")
    needed = estimate_bytes(request, features, examples)
    if needed > memory_mb * 1024 * 1024 * 0.8:
        who = "needs" if request.workers == 1 else f"needs in each of its {request.workers} workers"
        problems.append(
            f"network too large: {who} about {needed / 2**20:.0f} MiB, more than 80% of the "
            f"{memory_mb} MiB the trainer is given"
        )
    return problems


def estimate_bytes(request: TrainingRequest, features: int, examples: int) -> int:
    """Bytes one trainer's memory holds for the run (trainer.nn.footprint), with its training set and
    that set's working copies: the chain's, or one data-parallel worker's, which holds only its slice
    of the training set and computes one micro-shard at a time."""
    itemsize = 8 if request.dtype == "float64" else 4
    sizes = [features, *request.neuron_list()]
    batch, exchanged, scored = request.batch_size or examples, 0, 0
    if request.workers > 1:
        held = held_examples(examples, request.workers)
        # the held-out examples (a worker scores them all, whichever worker it is), from the
        # training examples left (`examples`) and the share held out
        fraction = request.validation_fraction
        scored = math.ceil(examples * fraction / (1 - fraction))
        batch, examples = micro_shard_examples(examples, batch), held
        # the partials it sends, the chunks it sums, the parameters it gathers
        exchanged = 3 * footprint.parameter_count(sizes)
    network = footprint.network_numbers(sizes, batch, request.optimizer) + exchanged
    data = features * (examples * 2 + scored)  # training set plus its working copies, and the held-out set
    return itemsize * (network + data)


def check_against_trainer(request: TrainingRequest, timeout_s: int | None) -> list[str]:
    """A fused invocation stops once less than `time_margin_ms` is left of the trainer's timeout: a
    margin as long as the timeout would leave no time for the steps, and the run would crawl one
    step per invocation or time out."""
    if timeout_s is None or request.time_margin_ms < timeout_s * 1000 // 2:
        return []
    return [
        f"time_margin_ms: {request.time_margin_ms} ms is more than half of the trainer's {timeout_s} s timeout "
        f"(TRAINER_TIMEOUT_S); lower it below {timeout_s * 500} ms or raise the function's timeout"
    ]
