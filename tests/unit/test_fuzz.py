"""Bad input, fuzzed (issue 6, item 5): the request validator, the trainer event parser and the
dataset loader, in process, each with a bounded, deterministic number of hypothesis examples (the
profiles: tests/support/fuzz.py). Through LaunchLambda on the local cloud, with nothing written:
tests/integration/chain/test_fuzz.py.

Every case is either accepted (and then usable) or refused with the module's own error and a
message that names what is wrong; no other exception.
"""

from __future__ import annotations

import io
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import event as event_
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.support.fuzz import (
    JSON_VALUES,
    RUN_ID_CHARS,
    RUN_IDS,
    SPECIAL_NUMBERS,
    chance,
    check_accepted_request,
    check_refusal,
    examples,
    mostly,
    requests,
)
from tests.support.requests import moons
from trainer.data.loader import REQUIRED_KEYS, DatasetError, check_raw, load_raw, prepare
from trainer.errors import EventError
from trainer.request import RUN_ID_PATTERN, parse
from trainer.statemachine import EVENT_KEYS, STATES, Event, parse_event

GOOD_REQUEST = moons((3, 1), ("relu", "sigmoid"), epochs=2, learning_rate=0.1)


# -- request validator -----------------------------------------------------------------------------


@settings(max_examples=examples(ci=100, deep=400))
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


@settings(max_examples=examples(ci=100, deep=400))
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


def _npz_of(x: np.ndarray) -> tuple[str, bytes]:
    return "npz", _bytes_of(
        {"train_set_x": x, "train_set_y": np.arange(len(x)) % 2, "test_set_x": x[:1], "test_set_y": [1]}, "npz"
    )


# What this fuzzer found (the deep budget finds both again; the ci budget may not): examples without
# features, and finite values that overflow once normalised.
@settings(max_examples=examples(ci=60, deep=250))
@given(
    file=dataset_files(),
    method=st.sampled_from(["auto", "none", "minmax", "standardize"]),
    dtype=st.sampled_from(["float64", "float32"]),
)
@example(file=_npz_of(np.zeros((3, 0))), method="auto", dtype="float64")
@example(file=_npz_of(np.array([[1e308], [-1e308], [0.0]])), method="minmax", dtype="float64")
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
