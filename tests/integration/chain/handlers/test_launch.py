"""LaunchLambda, invoked through the Lambda API of the local cloud: every problem of a bad request
in one message, and nothing written anywhere (no key, item or object, and no hand-off sent)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tests.support.chain import ChainStack, footprint
from tests.support.requests import GOOD
from trainer.aws import client
from trainer.errors import RequestError
from trainer.handlers import launch as launch_handler
from trainer.local.cloud_runner import LaunchRefused


def _with(**changes):
    payload = {**GOOD, **changes}
    return {k: v for k, v in payload.items() if v is not ...}


def _upload(stack: ChainStack, name: str, body: bytes) -> str:
    """A dataset file where a user puts one: the function reads its own bucket, not this machine."""
    return stack.services.blob_store.put(f"datasets/{name}", body)


def _npz(stack: ChainStack, name: str, **arrays) -> str:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return _upload(stack, name, buffer.getvalue())


BAD_REQUESTS = [
    ("not an object", [1, 2], ["must be a JSON object"]),
    (
        "missing required",
        {"dataset": "moons"},
        [
            "neurons: required field is missing",
            "epochs: required field is missing",
            "learning_rate: required field is missing",
        ],
    ),
    (
        "unknown activation",
        _with(activations={"layer1": "swish", "layer2": "sigmoid"}),
        ["activations.layer1: unknown activation 'swish'"],
    ),
    ("neurons not positive", _with(neurons={"layer1": 0, "layer2": 1}), ["neurons.layer1: must be a positive integer"]),
    (
        "neurons not integer",
        _with(neurons={"layer1": 2.5, "layer2": 1}),
        ["neurons.layer1: must be a positive integer"],
    ),
    (
        "layer gap",
        _with(neurons={"layer1": 4, "layer3": 1}, activations={"layer1": "relu", "layer3": "sigmoid"}),
        ["layer keys must run layer1..layer2 without gaps"],
    ),
    (
        "bad layer key",
        _with(neurons={"first": 4, "layer2": 1}),
        ["key 'first' is not of the form layerN", "must name the same layers"],
    ),
    (
        "softmax hidden",
        _with(activations={"layer1": "softmax", "layer2": "sigmoid"}),
        ["'softmax' is only allowed on the output layer"],
    ),
    (
        "relu output",
        _with(activations={"layer1": "relu", "layer2": "relu"}),
        ["the output layer must be sigmoid or softmax"],
    ),
    (
        "output does not match binary labels",
        _with(neurons={"layer1": 4, "layer2": 3}),
        ["a sigmoid output layer needs 1 neuron, got 3"],
    ),
    (
        "softmax with wrong class count",
        _with(
            dataset="spirals", activations={"layer1": "relu", "layer2": "softmax"}, neurons={"layer1": 4, "layer2": 2}
        ),
        ["one neuron per class (3 in the labels), got 2"],
    ),
    ("epochs out of range", _with(epochs=0), ["epochs: Expected `int` >= 1, got 0"]),
    ("learning rate out of range", _with(learning_rate=-1), ["learning_rate: Expected `float` > 0.0, got -1"]),
    ("batch size out of range", _with(batch_size=0), ["batch_size: Expected `int` >= 1, got 0"]),
    ("batch larger than the data", _with(batch_size=100_000), ["batch_size: 100000 is larger than the"]),
    ("unknown optimizer", _with(optimizer="sgd2"), ["optimizer: must be one of 'gd', 'momentum', 'adam', got 'sgd2'"]),
    ("unknown field", _with(epoch=5), ["epoch: unknown field (did you mean 'epochs'?)"]),
    (
        "local path on Lambda",
        _with(dataset="/nonexistent/data.h5"),
        ["dataset '/nonexistent/data.h5' must be an s3:// URI in the configured bucket or a built-in name"],
    ),
    ("bucket outside the stack", _with(dataset="s3://someone-elses-bucket/cats.h5"), ["is not the configured bucket"]),
    (
        "network too large",
        _with(
            neurons={"layer1": 100_000, "layer2": 100_000, "layer3": 1},
            activations={"layer1": "relu", "layer2": "relu", "layer3": "sigmoid"},
        ),
        ["network too large"],
    ),
    ("bad run id", _with(run_id="../../etc"), ["run_id: must be 1-64 letters"]),
    (
        "several at once",
        _with(epochs=-3, learning_rate=0, activations={"layer1": "nope", "layer2": "sigmoid"}),
        ["epochs", "learning_rate", "unknown activation 'nope'"],
    ),
]


@pytest.mark.parametrize(("name", "payload", "messages"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_one_clear_error_and_write_nothing(stack, name, payload, messages) -> None:
    stack.drop_all()
    before = footprint(stack)
    with pytest.raises(LaunchRefused) as caught:
        stack.launch(payload)
    text = str(caught.value)
    assert text.startswith("invalid training request")
    for message in messages:
        assert message in text, f"{message!r} not in {text!r}"
    assert footprint(stack) == before


def test_a_missing_local_dataset_is_named_where_local_files_are_read(stack) -> None:
    # Only outside Lambda (a function reads its bucket and the built-ins): the validation in this process.
    with pytest.raises(RequestError, match=r"is neither a built-in .* nor an existing file"):
        launch_handler.validate(_with(dataset="/nonexistent/data.h5"), stack.services)


def test_a_learning_rate_that_is_not_finite_is_refused_and_writes_nothing(stack) -> None:
    # JSON has no NaN or infinity: a payload with a bare NaN never reaches the handler (the runtime
    # cannot unmarshal it). A number too large for a double is valid JSON and parses to infinity.
    body = json.dumps(_with(learning_rate=0.5)).replace('"learning_rate": 0.5', '"learning_rate": 1e999')
    stack.drop_all()
    before = footprint(stack)
    resp = client("lambda").invoke(FunctionName=stack.env["LAUNCH_FUNCTION_NAME"], Payload=body.encode())
    error = json.loads(resp["Payload"].read())
    assert resp.get("FunctionError") and error["errorMessage"].startswith("invalid training request")
    assert "learning_rate" in error["errorMessage"], error
    assert footprint(stack) == before


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"train_set_x": np.zeros((5, 2))}, "missing keys: train_set_y, test_set_x, test_set_y"),
        (
            {
                "train_set_x": np.zeros((5, 2)),
                "train_set_y": np.zeros(4),
                "test_set_x": np.zeros((3, 2)),
                "test_set_y": np.zeros(3),
            },
            "train_set_x has 5 examples but train_set_y has 4 labels",
        ),
        (
            {
                "train_set_x": np.full((5, 2), np.nan),
                "train_set_y": np.zeros(5),
                "test_set_x": np.zeros((3, 2)),
                "test_set_y": np.zeros(3),
            },
            "train_set_x contains NaN or infinity",
        ),
        (
            {
                "train_set_x": np.zeros((5, 2)),
                "train_set_y": np.array([0, 1, -1, 0, 1]),
                "test_set_x": np.zeros((3, 2)),
                "test_set_y": np.zeros(3),
            },
            "integer class labels",
        ),
        (
            {
                "train_set_x": np.zeros((5, 2)),
                "train_set_y": np.zeros(5),
                "test_set_x": np.zeros((3, 3)),
                "test_set_y": np.zeros(3),
            },
            "examples have shape (2,) but test_set_x (3,)",
        ),
    ],
)
def test_bad_datasets_are_named(stack, arrays, message) -> None:
    stack.drop_all()
    dataset = _npz(stack, "bad.npz", **arrays)
    before = footprint(stack)
    with pytest.raises(LaunchRefused, match=r"dataset: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        stack.launch(_with(dataset=dataset))
    assert footprint(stack) == before


def test_truncated_and_foreign_files_are_unreadable_not_crashes(stack) -> None:
    good = io.BytesIO()
    np.savez(
        good, train_set_x=np.zeros((4, 2)), train_set_y=np.zeros(4), test_set_x=np.zeros((2, 2)), test_set_y=np.zeros(2)
    )
    truncated = _upload(stack, "cut.npz", good.getvalue()[:100])
    foreign = _upload(stack, "text.h5", b"not hdf5 at all")
    for dataset in (truncated, foreign):
        with pytest.raises(LaunchRefused, match="is unreadable"):
            stack.launch(_with(dataset=dataset))


def test_a_good_request_launches_and_names_its_run(stack) -> None:
    stack.drop_all()
    result = stack.launch(_with(run_id="launch-ok-1"))
    assert result["run_id"] == "launch-ok-1" and result["status"] == "RUNNING"
    assert result["total_steps"] == 3 * (1 + 5) + 1
    assert [e["payload"] for e in stack.held()] == [
        {"state": "start", "run_id": "launch-ok-1", "epoch": 0, "layer": 0, "batch": 0, "seq": 0}
    ]
    run = stack.services.run_store.get_run("launch-ok-1")
    assert run["status"] == "RUNNING" and run["total_steps"] == result["total_steps"]
    with pytest.raises(LaunchRefused, match="a run 'launch-ok-1' already exists"):
        stack.launch(_with(run_id="launch-ok-1"))
    assert stack.drop_all() == 1


def test_s3_datasets_in_the_configured_bucket_are_read(stack) -> None:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(
        buffer,
        train_set_x=rng.integers(0, 255, (20, 3, 3), dtype=np.uint8),
        train_set_y=rng.integers(0, 2, 20),
        test_set_x=rng.integers(0, 255, (6, 3, 3), dtype=np.uint8),
        test_set_y=rng.integers(0, 2, 6),
    )
    key = _upload(stack, "tiny.npz", buffer.getvalue())
    stack.drop_all()
    result = stack.launch(_with(dataset=key))
    assert result["examples"] == 20
    assert stack.drop_all() == 1
    with pytest.raises(LaunchRefused, match="cannot read"):
        stack.launch(_with(dataset=f"s3://{stack.services.blob_store.bucket}/datasets/absent.npz"))
