"""The data-parallel tests' shared request, its one-process reference (trainer.parallel.reference),
and faults injected into a stack's workers."""

from __future__ import annotations

import json

import numpy as np

from tests.support.chain import FAULTY_TRAINER
from tests.support.cloud import aws
from trainer.data.loader import load_raw, prepare
from trainer.nn.init import initialise
from trainer.parallel import reference

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
