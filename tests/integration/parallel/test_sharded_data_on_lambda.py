"""Each worker holds only its share of the training set, so a dataset too large for one trainer
trains with workers: on the local cloud (which enforces the functions' MemorySize), a 40,000 x 784
MNIST-shaped set in float64 is refused at launch for one trainer of 512 MB, with a message that
names the memory, and trains with 4 workers, bit-identical to the reference."""

from __future__ import annotations

import secrets

from tests.performance.workloads import mnist_like
from tests.support.cloud import aws, invoke, wait_for_status
from trainer import model_file
from trainer.data.loader import load_raw, prepare
from trainer.local.provision import provision_stack
from trainer.nn.init import initialise
from trainer.parallel import reference


def test_a_set_one_trainer_cannot_hold_is_refused_and_trains_with_four_workers(cloud_env, tmp_path) -> None:
    stack = provision_stack("dps" + secrets.token_hex(3), trainer_memory_mb=512)
    path = mnist_like(tmp_path / "mnist.npz", train=40_000, test=2_000)
    aws("s3", cloud_env).upload_file(str(path), stack["MODEL_BUCKET"], "datasets/mnist-40k.npz")
    request = {
        "dataset": f"s3://{stack['MODEL_BUCKET']}/datasets/mnist-40k.npz",
        "neurons": {"layer1": 16, "layer2": 10},
        "activations": {"layer1": "relu", "layer2": "softmax"},
        "epochs": 2,
        "learning_rate": 0.5,
        "run_id": f"dps-{secrets.token_hex(3)}",
    }
    resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], request)
    assert resp.get("FunctionError"), body
    assert "network too large: needs about" in body["errorMessage"] and "512 MiB" in body["errorMessage"], body

    resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], {**request, "workers": 4})
    assert "FunctionError" not in resp, body
    item = wait_for_status(cloud_env, stack["TABLE_NAME"], request["run_id"], 600)
    assert item["status"] == "SUCCEEDED", item
    blob = aws("s3", cloud_env).get_object(Bucket=stack["MODEL_BUCKET"], Key=f"models/{request['run_id']}/model.npz")
    _, got, _, _ = model_file.load(blob["Body"].read())
    ds = prepare(load_raw(str(path)), "auto", "float64")
    params = initialise([784, 16, 10], "scaled_normal", 1, "float64")
    want, costs, _, _ = reference.train(ds.x_train, ds.y_train, params, ["relu", "softmax"], 2, 0.5, workers=4)
    assert {k: v.tobytes() for k, v in got.items()} == {k: v.tobytes() for k, v in want.items()}
    assert float(item["final_cost"]) == costs[-1]
