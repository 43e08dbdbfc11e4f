"""Bad input, fuzzed (issue 6, item 5): the request validator, the trainer event parser and the
dataset loader, each with a bounded, deterministic number of hypothesis examples.

Every case is either accepted (and then usable) or refused with the module's own error and a
message that names what is wrong; no other exception, and a refused launch writes nothing.
"""

from __future__ import annotations

import io
import math
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import h5py
import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as event_
from hypothesis import strategies as st

from tests.support.requests import moons
from trainer.aws import client as aws_client
from trainer.data.loader import REQUIRED_KEYS, DatasetError, check_raw, load_raw, prepare
from trainer.errors import EventError, RequestError
from trainer.handlers import launch as launch_handler
from trainer.request import RUN_ID_PATTERN, TrainingRequest, parse
from trainer.statemachine import EVENT_KEYS, STATES, Event, parse_event

# Bounded and deterministic: the same examples on every machine, no example database.
FUZZ = settings(
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

FIELDS = {field.encode_name for field in msgspec.structs.fields(TrainingRequest)}
# A problem names a field ("epochs: ...", "neurons.layer2: ...", "dataset: ...") or the request as a whole.
PROBLEM = re.compile(r"^(?P<field>[a-z_0-9]+)(\.[^:]*)?:|^neurons and activations |^network too large")
RUN_ID_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


GOOD_REQUEST = moons((3, 1), ("relu", "sigmoid"), epochs=2, learning_rate=0.1)


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


def written_state(svc) -> tuple[int, int, int]:
    # Completion claims of earlier tests' runs are leases that expire on their own (1 s here): they
    # would make the count move with the clock, and validate never writes one.
    client = svc.tensor_store.client
    keys = sum(1 for key in client.scan_iter(count=5000) if b":handoff:" not in key)
    items = aws_client("dynamodb").scan(TableName=svc.settings.table_name, Select="COUNT")["Count"]
    objects = aws_client("s3").list_objects_v2(Bucket=svc.settings.model_bucket).get("KeyCount", 0)
    return keys, items, objects


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


# -- request validator -----------------------------------------------------------------------------


@settings(FUZZ, max_examples=400)
@given(payload=st.one_of(JSON_VALUES, requests("lnn-bucket")))
@example(payload={**GOOD_REQUEST})
@example(payload={**GOOD_REQUEST, "epochs": True})
@example(payload={**GOOD_REQUEST, "learning_rate": True})
@example(payload={**GOOD_REQUEST, "seed": False})
@example(payload={**GOOD_REQUEST, "run_id": "run\n"})
@example(payload={**GOOD_REQUEST, "run_id": "x" * 64})
def test_parse_accepts_or_lists_problems(payload):
    request, problems = parse(payload)
    if request is None:
        check_refusal(problems, payload)
    else:
        assert problems == []
        check_accepted_request(request, payload)


@pytest.fixture(scope="module")
def svc(stack):
    return stack.services


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_launch_validate_accepts_or_refuses_and_writes_nothing(stack, svc, data):
    payload = data.draw(requests(svc.settings.model_bucket))
    before = written_state(svc)
    # svc's invoker is the production one: an invoke would reach the Lambda service, which holds it.
    queued = len(stack.held())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            request, dataset = launch_handler.validate(payload, svc)
        except RequestError as exc:
            event_("refused")
            check_refusal(exc.problems, payload)
            assert str(exc).startswith("invalid training request")
        else:
            event_("accepted")
            check_accepted_request(request, payload)
            assert dataset is not None and dataset.features >= 1 and dataset.examples >= 1
            for array in (dataset.x_train, dataset.x_test, dataset.y_train, dataset.y_test):
                assert np.all(np.isfinite(array))
    assert written_state(svc) == before, "validate wrote something"
    assert len(stack.held()) == queued, "validate invoked the trainer"


# -- trainer event parser --------------------------------------------------------------------------


@st.composite
def events(draw) -> Any:
    if chance(draw, 1 / 8):
        return draw(JSON_VALUES)
    counters = mostly(
        st.integers(min_value=0, max_value=50),
        st.one_of(SPECIAL_NUMBERS, JSON_VALUES, st.sampled_from([-1, 2**40 - 1, 2**40, 2**64])),
        6,
    )
    event = {
        "state": draw(
            mostly(st.sampled_from(STATES), st.one_of(st.sampled_from(["Start", "loss", "", "finish "]), JSON_VALUES))
        ),
        "run_id": draw(mostly(RUN_IDS, JSON_VALUES, 6)),
        **{key: draw(counters) for key in ("epoch", "layer", "batch", "seq")},
    }
    if chance(draw, 1 / 6):
        for key in draw(st.lists(st.sampled_from(EVENT_KEYS), min_size=1, max_size=2, unique=True)):
            del event[key]
    if chance(draw, 1 / 6):
        event.update(draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, min_size=1, max_size=2)))
    return event


@settings(FUZZ, max_examples=400)
@given(payload=events())
@example(payload={"state": "start", "run_id": "run-1", "epoch": 0, "layer": 0, "batch": 0, "seq": 0})
@example(payload={"state": "start", "run_id": "run-1\n", "epoch": 0, "layer": 0, "batch": 0, "seq": 0})
@example(payload={"state": "forward", "run_id": "r", "epoch": True, "layer": 1, "batch": 0, "seq": 1})
def test_parse_event_returns_a_valid_event_or_event_error(payload):
    try:
        event = parse_event(payload)
    except EventError as exc:
        event_("EventError")
        assert str(exc).startswith(("invalid trainer event", "trainer event must be"))
        return
    event_("accepted")
    assert isinstance(event, Event)
    assert event.state in STATES
    assert isinstance(event.run_id, str) and RUN_ID_CHARS.fullmatch(event.run_id), f"accepted run_id {event.run_id!r}"
    assert RUN_ID_PATTERN.match(event.run_id)
    for value in (event.epoch, event.layer, event.batch, event.seq):
        assert type(value) is int and 0 <= value < 2**40


# -- dataset loader ----------------------------------------------------------------------------------

ODD_FLOATS = st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 1e39, 5e-324, 0.0])


@st.composite
def raw_arrays(draw) -> dict[str, Any]:
    m_train = draw(st.integers(min_value=0, max_value=12))
    m_test = draw(st.integers(min_value=0, max_value=6))
    features = draw(st.sampled_from([(1,), (3,), (2, 2), (), (0,)]))
    x_dtype = draw(st.sampled_from(["float64", "float32", "uint8", "int64", "bool"]))
    classes = draw(st.integers(min_value=1, max_value=4))
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**16)))
    arrays: dict[str, Any] = {}
    for split, m in (("train", m_train), ("test", m_test)):
        x = (rng.normal(size=(m, *features)) * 50).astype(x_dtype)
        y = rng.integers(0, classes, size=m).astype(draw(st.sampled_from(["int64", "float64", "uint8"])))
        arrays[f"{split}_set_x"], arrays[f"{split}_set_y"] = x, y
    final: set[str] = set()  # keys already turned into something non-numeric
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        key = draw(st.sampled_from(REQUIRED_KEYS))
        if key not in arrays or key in final or np.ndim(arrays[key]) == 0:
            continue
        value = arrays[key]
        mutation = draw(
            st.sampled_from(
                [
                    "odd_value",
                    "label_range",
                    "label_negative",
                    "label_fraction",
                    "length",
                    "drop",
                    "rename",
                    "object",
                    "string",
                    "scalar",
                    "2d_labels",
                    "transpose",
                    "complex",
                ]
            )
        )
        if mutation == "odd_value" and value.size and value.dtype.kind == "f":
            value = value.copy()
            value.flat[draw(st.integers(min_value=0, max_value=value.size - 1))] = draw(ODD_FLOATS)
        elif mutation == "label_range" and value.size:
            value = value.astype(np.float64)
            value.flat[0] = draw(st.sampled_from([5, 1e6, 2**53, 1e300]))
        elif mutation == "label_negative" and value.size:
            value = value.astype(np.float64)
            value.flat[0] = -1
        elif mutation == "label_fraction" and value.size:
            value = value.astype(np.float64) + 0.5
        elif mutation == "length":
            value = value[: max(0, len(value) - 1)] if len(value) else np.zeros((2, *value.shape[1:]), value.dtype)
        elif mutation == "drop":
            del arrays[key]
            continue
        elif mutation == "rename":
            del arrays[key]
            arrays[key.upper()] = value
            continue
        elif mutation == "object":
            boxed = np.empty(len(value), dtype=object)
            for i, row in enumerate(value):
                boxed[i] = list(np.atleast_1d(row))
            value = boxed
        elif mutation == "string":
            value = value.astype(str)
        elif mutation == "scalar":
            value = np.float64(draw(ODD_FLOATS))
        elif mutation == "2d_labels":
            value = np.stack([value, value], axis=1) if value.ndim == 1 else value
        elif mutation == "transpose":
            value = value.T
        elif mutation == "complex":
            value = value.astype(np.complex128)
        if mutation in ("object", "string", "complex"):
            final.add(key)
        arrays[key] = value
    return arrays


def _bytes_of(arrays: dict[str, Any], fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "npz":
        np.savez(buffer, **arrays)
    else:
        with h5py.File(buffer, "w") as handle:
            for key, value in arrays.items():
                value = np.asarray(value)
                if value.dtype.kind == "O":
                    handle.create_dataset(
                        key,
                        data=np.array([str(v).encode() for v in value.ravel()], dtype=object),
                        dtype=h5py.string_dtype(),
                    )
                elif value.dtype.kind == "U":
                    handle.create_dataset(key, data=value.astype("S"))
                else:
                    handle.create_dataset(key, data=value)
    return buffer.getvalue()


@st.composite
def dataset_files(draw) -> tuple[str, bytes]:
    fmt = draw(st.sampled_from(["npz", "h5"]))
    blob = _bytes_of(draw(raw_arrays()), fmt)
    damage = draw(st.sampled_from(["none", "none", "none", "truncate", "flip", "garbage", "empty", "wrong_ext"]))
    if damage == "truncate":
        blob = blob[: draw(st.integers(min_value=0, max_value=max(0, len(blob) - 1)))]
    elif damage == "flip" and blob:
        data = bytearray(blob)
        for _ in range(draw(st.integers(min_value=1, max_value=8))):
            position = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[position] ^= draw(st.integers(min_value=1, max_value=255))
        blob = bytes(data)
    elif damage == "garbage":
        blob = draw(st.binary(max_size=200))
    elif damage == "empty":
        blob = b""
    elif damage == "wrong_ext":
        fmt = draw(st.sampled_from(["h5" if fmt == "npz" else "npz", "txt", "npy"]))
    return fmt, blob


@settings(FUZZ, max_examples=250)
@given(
    file=dataset_files(),
    method=st.sampled_from(["auto", "none", "minmax", "standardize"]),
    dtype=st.sampled_from(["float64", "float32"]),
)
def test_loader_refuses_bad_files_with_dataset_error_or_problems(file, method, dtype):
    fmt, blob = file
    with tempfile.TemporaryDirectory(prefix="lnn-fuzz-") as tmp:
        path = Path(tmp) / f"data.{fmt}"
        path.write_bytes(blob)
        try:
            raw = load_raw(str(path))
        except DatasetError as exc:
            event_("DatasetError")
            assert str(exc).strip()
            return
    assert set(REQUIRED_KEYS) <= set(raw)
    for key in REQUIRED_KEYS:
        assert np.asarray(raw[key]).dtype.kind in "biuf", (key, np.asarray(raw[key]).dtype)
    problems = check_raw(raw)
    if problems:
        event_("check_raw problems")
        assert all(isinstance(p, str) and p.strip() for p in problems)
        return
    event_("accepted")
    # Accepted: the data must be usable for training as it is.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        dataset = prepare(raw, method, dtype)
    assert dataset.features >= 1, "accepted a dataset whose examples have no features"
    assert dataset.examples >= 1 and dataset.x_test.shape[1] >= 1
    for name in ("x_train", "x_test", "y_train", "y_test", "shift", "scale"):
        assert np.all(np.isfinite(getattr(dataset, name))), (
            f"accepted data whose {name} is not finite after {method}/{dtype} normalisation"
        )
    if dataset.classes <= 2**20:  # more classes than any output layer may have: refused by check_against_data
        labels = np.concatenate([dataset.y_train.ravel(), dataset.y_test.ravel()])
        assert np.all(labels >= 0) and np.all(labels == np.floor(labels)) and np.all(labels < dataset.classes)


@pytest.mark.parametrize(
    ("x", "method", "dtype"),
    [
        (np.array([[1e308], [-1e308], [0.0]]), "minmax", "float64"),  # span overflows to inf
        (np.array([[1e308], [-1e308], [0.0]]), "minmax", "float32"),
        (np.array([[1e39], [1.0], [0.0]]), "auto", "float32"),  # finite in float64, inf in float32
        (np.array([[1e39], [1.0], [0.0]]), "none", "float32"),
    ],
)
def test_finite_data_that_overflows_when_normalised_is_refused(tmp_path: Path, x, method, dtype):
    """Finite raw data can still become inf/NaN after normalisation or the float32 cast: either
    check_raw (or validate) refuses it, or the prepared data is finite."""
    path = tmp_path / "huge.npz"
    np.savez(path, train_set_x=x, train_set_y=np.array([0, 1, 0]), test_set_x=x[:1], test_set_y=np.array([1]))
    raw = load_raw(str(path))
    if check_raw(raw):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        dataset = prepare(raw, method, dtype)
    assert np.all(np.isfinite(dataset.x_train)) and np.all(np.isfinite(dataset.x_test)), (
        f"{method}/{dtype}: accepted data that is not finite once normalised"
    )


def test_examples_without_features_are_refused(tmp_path: Path):
    path = tmp_path / "empty-features.npz"
    np.savez(
        path,
        train_set_x=np.zeros((4, 0)),
        train_set_y=np.array([0, 1, 0, 1]),
        test_set_x=np.zeros((2, 0)),
        test_set_y=np.array([0, 1]),
    )
    problems = check_raw(load_raw(str(path)))
    assert any("feature" in p for p in problems), problems


def test_truncated_npz_and_h5_are_dataset_errors(tmp_path: Path):
    """The two classic corruptions, each at several cut points (deterministic, no hypothesis)."""
    arrays = {
        "train_set_x": np.ones((8, 3)),
        "train_set_y": np.zeros(8),
        "test_set_x": np.ones((4, 3)),
        "test_set_y": np.zeros(4),
    }
    for fmt in ("npz", "h5"):
        blob = _bytes_of(arrays, fmt)
        for cut in (0, 1, 10, len(blob) // 3, len(blob) // 2, len(blob) - 20, len(blob) - 1):
            path = tmp_path / f"cut{cut}.{fmt}"
            path.write_bytes(blob[:cut])
            with pytest.raises(DatasetError):
                load_raw(str(path))
    # A zip that is not an npz archive at all, and an npz member that is not an .npy.
    path = tmp_path / "zip.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key in REQUIRED_KEYS:
            archive.writestr(f"{key}.npy", b"not an npy file")
    with pytest.raises(DatasetError):
        load_raw(str(path))


def test_dataset_errors_reach_the_user_as_request_errors(svc, tmp_path: Path):
    """Through LaunchLambda's validate: a bad file is one 'dataset: ...' problem, nothing written."""
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    before = written_state(svc)
    with pytest.raises(RequestError) as info:
        launch_handler.validate(
            {
                "dataset": str(path),
                "neurons": {"layer1": 1},
                "activations": {"layer1": "sigmoid"},
                "epochs": 1,
                "learning_rate": 0.1,
            },
            svc,
        )
    assert [p for p in info.value.problems if p.startswith("dataset:")]
    assert written_state(svc) == before
