"""The data-parallel tests' shared request and its one-process reference (trainer.parallel.reference)."""

from __future__ import annotations

import numpy as np

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
