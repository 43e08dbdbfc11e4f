"""Fuzzing, bounded and deterministic: the Hypothesis profiles and the strategies and checks the
fuzz tests share (tests/unit/test_fuzz.py in process, tests/integration/chain/test_fuzz.py through
LaunchLambda's validate on the local cloud).

Two profiles, chosen by LNN_HYPOTHESIS_PROFILE (tests/README.md):

- `ci` (the default, what `make test` runs): a few dozen to a hundred examples a test. Every defect
  the fuzzers have found is pinned by an `@example` or a test of its own, so it is found at any
  budget; the generated examples are a breadth check on top.
- `deep`: the budgets the fuzz tests were written with (1,200 examples in all), for a change to
  the request, event or dataset rules.

Both are derandomized, with no example database: the same examples on every machine.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from trainer.request import TrainingRequest

PROFILE_VARIABLE = "LNN_HYPOTHESIS_PROFILE"
PROFILES = ("ci", "deep")
settings.register_profile(
    "deep",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
settings.register_profile("ci", parent=settings.get_profile("deep"))
_loaded: list[str] = []


def load_profile() -> str:
    """The profile LNN_HYPOTHESIS_PROFILE names (ci when unset), loaded for the session."""
    name = os.environ.get(PROFILE_VARIABLE, "ci")
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_VARIABLE}={name!r}: one of {', '.join(PROFILES)}")
    settings.load_profile(name)
    _loaded[:] = [name]
    return name


def examples(ci: int, deep: int) -> int:
    """A fuzz test's budget under the loaded profile."""
    return deep if (_loaded or [load_profile()])[0] == "deep" else ci


FIELDS = {field.encode_name for field in msgspec.structs.fields(TrainingRequest)}
# A problem names a field ("epochs: ...", "neurons.layer2: ...", "dataset: ...") or the request as a whole.
PROBLEM = re.compile(r"^(?P<field>[a-z_0-9]+)(\.[^:]*)?:|^neurons and activations |^network too large")
RUN_ID_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def names_a_field(problem: str) -> bool:
    match = PROBLEM.match(problem)
    if not match:
        return False
    field = match.group("field")
    return field is None or field in FIELDS or field == "request"


# -- JSON-like values ----------------------------------------------------------------------------

SPECIAL_NUMBERS = st.sampled_from(
    [
        0,
        -1,
        1,
        2**31,
        2**63,
        10**30,
        -(10**30),
        0.0,
        -0.0,
        1e-320,
        1e308,
        float("nan"),
        float("inf"),
        float("-inf"),
        1.5,
        True,
        False,
    ]
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    SPECIAL_NUMBERS,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)

LAYER_KEYS = st.one_of(
    st.sampled_from(
        [
            "layer1",
            "layer2",
            "layer3",
            "layer0",
            "layer01",
            "Layer1",
            "layer",
            "layer1 ",
            "layer-1",
            "layer99",
            "layer1\n",
            "layer٣",
            "layer\u00b2",
        ]
    ),
    st.text(max_size=6),
)
LAYER_VALUES = st.one_of(
    st.integers(min_value=-3, max_value=12),
    st.sampled_from([10**7, 2**64, 1.0, 2.5, True, "4", None]),
    st.sampled_from(["relu", "tanh", "sigmoid", "softmax", "leaky_relu", "Relu", "linear", ""]),
    JSON_VALUES,
)


@st.composite
def layer_maps(draw) -> tuple[dict, dict]:
    """(neurons, activations): mostly well-formed, often subtly wrong, sometimes anything."""
    roll = draw(st.randoms(use_true_random=True)).random()
    kind = "good" if roll < 0.6 else "mutated" if roll < 0.85 else "random"
    if kind == "random":
        return (
            draw(st.dictionaries(LAYER_KEYS, LAYER_VALUES, max_size=4)),
            draw(st.dictionaries(LAYER_KEYS, LAYER_VALUES, max_size=4)),
        )
    count = draw(st.integers(min_value=1, max_value=3))
    neurons = {f"layer{i}": draw(st.integers(min_value=1, max_value=6)) for i in range(1, count + 1)}
    hidden = st.sampled_from(["relu", "tanh", "sigmoid", "leaky_relu"])
    activations = {f"layer{i}": draw(hidden) for i in range(1, count)}
    activations[f"layer{count}"] = draw(st.sampled_from(["sigmoid", "sigmoid", "softmax"]))
    if activations[f"layer{count}"] == "sigmoid":
        neurons[f"layer{count}"] = 1
    else:
        neurons[f"layer{count}"] = draw(st.sampled_from([2, 3, 4]))
    if kind == "mutated":
        target = draw(st.sampled_from([neurons, activations]))
        action = draw(st.sampled_from(["set", "drop", "add"]))
        if action == "set" and target:
            target[draw(st.sampled_from(sorted(target)))] = draw(LAYER_VALUES)
        elif action == "drop" and target:
            target.pop(draw(st.sampled_from(sorted(target))))
        else:
            target[draw(LAYER_KEYS)] = draw(LAYER_VALUES)
    return neurons, activations


def chance(draw, p: float) -> bool:
    """True with probability p (hypothesis' own integers favour their bounds)."""
    return draw(st.randoms(use_true_random=True)).random() < p


@st.composite
def mostly(draw, usual: st.SearchStrategy, other: st.SearchStrategy, one_in: int = 4):
    """`usual`, except one time in `one_in` `other` (st.one_of weighs its branches differently)."""
    return draw(other) if chance(draw, 1 / one_in) else draw(usual)


def field_value(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Usually a valid value, sometimes a boundary number, sometimes any JSON value."""
    return mostly(valid, st.one_of(SPECIAL_NUMBERS, JSON_VALUES))


RUN_IDS = mostly(
    st.from_regex(RUN_ID_CHARS, fullmatch=True),
    st.one_of(
        st.sampled_from(["..", "a/b", "run*", "{x}", "a b", "a" * 65, "", "run\n", "-x", "x:y", "é"]),
        st.text(max_size=70),
    ),
    one_in=2,
)
OPTIONAL = {
    "optimizer": field_value(st.sampled_from(["gd", "momentum", "adam"])) | st.just("sgd"),
    "batch_size": field_value(st.integers(min_value=1, max_value=400)),
    "l2": field_value(st.floats(min_value=0, max_value=2)),
    "seed": field_value(st.integers(min_value=0, max_value=2**32)),
    "init": field_value(st.sampled_from(["scaled_normal", "he", "xavier"])),
    "normalize": field_value(st.sampled_from(["auto", "none", "minmax", "standardize"])),
    "dtype": field_value(st.sampled_from(["float64", "float32"])),
    "chain": field_value(st.sampled_from(["fused", "per_step"])),
    "max_steps_per_invocation": field_value(st.integers(min_value=1, max_value=5000)),
    "time_margin_ms": field_value(st.integers(min_value=1000, max_value=600_000)),
    "notify_every": field_value(st.integers(min_value=0, max_value=10)),
    "checkpoint_every": field_value(st.integers(min_value=0, max_value=10)),
    "run_id": RUN_IDS,
}


def dataset_values(bucket: str) -> st.SearchStrategy:
    builtin = st.sampled_from(["moons", "circles", "moons", "circles", "blobs", "spirals"])
    return mostly(
        builtin,
        st.one_of(
            st.sampled_from(
                [
                    f"s3://{bucket}/missing.npz",
                    "s3://other-bucket/data.h5",
                    f"s3://{bucket}",
                    "s3://",
                    "/nonexistent/x.npz",
                    "../../etc/passwd",
                    "/etc/hostname",
                    "moons.h5",
                    "",
                    "x" * 1100,
                    "nul\0.npz",
                    "/dev/null",
                    "/proc/self/environ",
                ]
            ),
            JSON_VALUES,
        ),
    )


@st.composite
def requests(draw, bucket: str) -> Any:
    if chance(draw, 1 / 15):
        return draw(JSON_VALUES)  # not even an object, most of the time
    neurons, activations = draw(layer_maps())
    payload: dict[str, Any] = {
        "dataset": draw(dataset_values(bucket)),
        "neurons": draw(mostly(st.just(neurons), JSON_VALUES, one_in=8)),
        "activations": draw(mostly(st.just(activations), JSON_VALUES, one_in=8)),
        "epochs": draw(field_value(st.integers(min_value=1, max_value=5))),
        "learning_rate": draw(field_value(st.floats(min_value=1e-4, max_value=1.0))),
    }
    for key in draw(st.lists(st.sampled_from(sorted(OPTIONAL)), max_size=3, unique=True)):
        payload[key] = draw(OPTIONAL[key])
    if chance(draw, 0.2):
        for key in draw(st.lists(st.sampled_from(sorted(payload)), min_size=1, max_size=2, unique=True)):
            del payload[key]  # missing keys
    if chance(draw, 0.2):
        payload.update(draw(st.dictionaries(st.text(max_size=10), JSON_VALUES, min_size=1, max_size=2)))  # extra
    return payload


# -- shared checks -------------------------------------------------------------------------------


NUMERIC_FIELDS = (
    "epochs",
    "learning_rate",
    "batch_size",
    "l2",
    "seed",
    "max_steps_per_invocation",
    "time_margin_ms",
    "notify_every",
    "checkpoint_every",
)


def check_accepted_request(request: TrainingRequest, payload: Any) -> None:
    """What the rest of the system relies on once a request is accepted."""
    for key in NUMERIC_FIELDS:
        # JSON true/false is not a number: neurons.layerN already refuses it, so must every field.
        assert not isinstance(payload.get(key), bool), f"accepted {key}={payload[key]!r} as a number"
    assert isinstance(request.epochs, int) and not isinstance(request.epochs, bool) and request.epochs >= 1
    assert math.isfinite(request.learning_rate) and request.learning_rate > 0
    assert math.isfinite(request.l2) and request.l2 >= 0
    sizes, acts = request.neuron_list(), request.activation_list()
    assert len(sizes) == len(acts) == request.layers >= 1
    assert all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes)
    assert acts[-1] in ("sigmoid", "softmax")
    if request.run_id is not None:
        assert RUN_ID_CHARS.fullmatch(request.run_id), f"accepted run_id {request.run_id!r}"


def check_refusal(problems: list[str], payload: Any) -> None:
    assert problems, "refused without a reason"
    extra = [str(k) for k in payload if k not in FIELDS] if isinstance(payload, dict) else []
    for problem in problems:
        assert isinstance(problem, str) and problem.strip()
        unknown = any(problem.startswith(f"{key or repr(key)}: unknown field") for key in extra)
        assert unknown or names_a_field(problem), f"problem does not name a field: {problem!r}"
        assert "Traceback" not in problem
