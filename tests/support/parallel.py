"""The data-parallel tests' shared request, its one-process reference (trainer.parallel.reference),
and faults injected into a stack's workers."""

from __future__ import annotations

import json

import numpy as np

from tests.support.chain import FAULTY_TRAINER
from tests.support.cloud import aws
from trainer import model_file
from trainer.data.loader import load_raw, prepare
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
    dtype = payload.get("dtype", "float64")
    ds = prepare(load_raw(payload["dataset"]), "auto", dtype)
    params = initialise([ds.features, 12, 3], "scaled_normal", 1, dtype)
    got, costs, _ = reference.train(
        ds.x_train,
        ds.y_train,
        params,
        ["tanh", "softmax"],
        payload["epochs"],
        payload["learning_rate"],
        payload["optimizer"],
        payload["l2"],
        payload.get("batch_size"),
        1,
        workers=payload.get("workers", 1),
    )
    return got, costs


def with_faults(cloud_env, stack: dict, plan: dict) -> None:
    """The stack's trainer runs the faulty handler (tests/integration/functions.py) with `plan`."""
    lam = aws("lambda", cloud_env)
    name = stack["TRAINER_FUNCTION_NAME"]
    variables = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    lam.update_function_configuration(
        FunctionName=name,
        Environment={"Variables": {**variables, "LNN_TEST_FAULTS": json.dumps(plan)}},
        ImageConfig={"Command": [FAULTY_TRAINER]},
    )


def assert_ends_as_the_reference(cloud_env, stack: dict, payload: dict) -> None:
    """The run's model and epoch costs in the stack are bit for bit the one-process reference's."""
    blob = aws("s3", cloud_env).get_object(Bucket=stack["MODEL_BUCKET"], Key=f"models/{payload['run_id']}/model.npz")
    _, params, _, _ = model_file.load(blob["Body"].read())
    epochs = sorted(DynamoRunStore(stack["TABLE_NAME"]).epochs(payload["run_id"]), key=lambda e: e["epoch"])
    want_params, want_costs = expected(payload)
    assert {k: v.tobytes() for k, v in params.items()} == {k: v.tobytes() for k, v in want_params.items()}
    assert [e["epoch"] for e in epochs] == list(range(len(want_costs)))
    assert [float(e["cost"]) for e in epochs] == want_costs
