"""The data-parallel tests' shared request, its one-process reference (trainer.parallel.reference),
and faults injected into a stack's workers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from tests.support.chain import FAULTY_TRAINER
from tests.support.cloud import aws
from trainer import engine, model_file
from trainer.data.loader import load_raw, prepare
from trainer.data.split import carve, validation_indices
from trainer.nn.init import initialise
from trainer.parallel import reference
from trainer.stores.run_store import DynamoRunStore

REQUEST = {
    "dataset": "spirals",
    "neurons": {"layer1": 12, "layer2": 3},
    "activations": {"layer1": "tanh", "layer2": "softmax"},
    "epochs": 6,
    "learning_rate": 0.05,
    "optimizer": "adam",
    "batch_size": 100,
    "l2": 0.2,
}


def expected(payload: dict) -> tuple[dict[str, np.ndarray], list[float]]:
    got, costs, *_ = _reference(payload)
    return got, costs


def expected_scores(payload: dict) -> list[tuple[float, float]]:
    """Every epoch's validation (cost, accuracy) of a run with a validation_fraction: its held-out
    examples split off as the chain splits them, scored on the parameters each epoch ended with."""
    return _reference(payload)[2]


def expected_accuracy(payload: dict) -> list[float]:
    """Every epoch's training `accuracy` of a run with a validation_fraction, as the chain defines
    it: the share of its training examples that its batches classified right as they met them."""
    return _reference(payload)[3]


def _reference(
    payload: dict,
) -> tuple[dict[str, np.ndarray], list[float], list[tuple[float, float]], list[float]]:
    dtype = payload.get("dtype", "float64")
    raw, held = load_raw(payload["dataset"]), None
    if payload.get("validation_fraction"):
        seed = payload.get("seed", 1)
        raw, held = carve(raw, validation_indices(raw["train_set_x"].shape[0], payload["validation_fraction"], seed))
    ds = prepare(raw, "auto", dtype, held)
    params = initialise([ds.features, 12, 3], "scaled_normal", payload.get("seed", 1), dtype)
    scores: list[tuple[float, float]] = []

    def score(epoch: int, weights: dict[str, np.ndarray]) -> None:
        if ds.x_val is not None:
            scores.append(engine.evaluate_model(["tanh", "softmax"], weights, ds.x_val, ds.y_val))

    got, costs, _, hits = reference.train(
        ds.x_train,
        ds.y_train,
        params,
        ["tanh", "softmax"],
        payload["epochs"],
        payload["learning_rate"],
        payload["optimizer"],
        payload["l2"],
        payload.get("batch_size"),
        payload.get("seed", 1),
        workers=payload.get("workers", 1),
        on_epoch=score,
    )
    return got, costs, scores, [h / ds.x_train.shape[1] for h in hits]


def faulty(cloud_env, stack: dict) -> dict:
    """The stack's trainer runs the faulty handler with no plan yet: one change of its
    configuration, after which each test's plan (`set_faults`) reaches the warm environments."""
    aws("lambda", cloud_env).update_function_configuration(
        FunctionName=stack["TRAINER_FUNCTION_NAME"], ImageConfig={"Command": [FAULTY_TRAINER]}
    )
    return stack


def set_faults(cloud, stack: dict, plan: dict | None) -> None:
    """The faulty trainer's plan from its next invocation on, the one the local cloud keeps for it
    (trainer.local.handler_faults); None clears it. Its warm environments stay, as on Lambda."""
    cloud.set_handler_faults(stack["TRAINER_FUNCTION_NAME"], plan)


@contextlib.contextmanager
def retries(cloud_env, stack: dict, attempts: int) -> Iterator[None]:
    """The trainer's asynchronous retries set to `attempts` meanwhile, then as they were (Lambda
    applies an event invoke config to the next event, without a cold start)."""
    lam = aws("lambda", cloud_env)
    name = stack["TRAINER_FUNCTION_NAME"]
    was = lam.get_function_event_invoke_config(FunctionName=name)
    kept = {k: was[k] for k in ("MaximumEventAgeInSeconds", "DestinationConfig") if k in was}
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=attempts, **kept)
    try:
        yield
    finally:
        lam.put_function_event_invoke_config(
            FunctionName=name, MaximumRetryAttempts=was["MaximumRetryAttempts"], **kept
        )


def assert_ends_as_the_reference(cloud_env, stack: dict, payload: dict) -> None:
    """The run's model and epoch costs in the stack are bit for bit the one-process reference's."""
    blob = aws("s3", cloud_env).get_object(Bucket=stack["MODEL_BUCKET"], Key=f"models/{payload['run_id']}/model.npz")
    _, params, _, _ = model_file.load(blob["Body"].read())
    epochs = sorted(DynamoRunStore(stack["TABLE_NAME"]).epochs(payload["run_id"]), key=lambda e: e["epoch"])
    want_params, want_costs, want_scores, want_accuracy = _reference(payload)
    assert {k: v.tobytes() for k, v in params.items()} == {k: v.tobytes() for k, v in want_params.items()}
    assert [e["epoch"] for e in epochs] == list(range(len(want_costs)))
    assert [float(e["cost"]) for e in epochs] == want_costs
    if payload.get("validation_fraction"):  # every epoch scored on the held-out examples
        assert [(float(e["validation_cost"]), float(e["validation_accuracy"])) for e in epochs] == want_scores
        assert [float(e["accuracy"]) for e in epochs] == want_accuracy  # of its batches, as they met them
