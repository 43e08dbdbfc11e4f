"""Data-parallel runs on the real path: LaunchLambda invoked through the Lambda API starts one
TrainerLambda invocation per worker (each in its own execution environment, the image's Python),
each loads only its micro-shards from the cache and runs every step, reducing through the cache;
worker 0 commits and completes the finish as the chain does. The same request with 2 and 4 workers
(these handing on every 4 steps) ends bit-identical (weights, epoch history, model, figures), and
equal to the one-process reference; the chain (no workers) agrees within 1e-9."""

from __future__ import annotations

import json
import secrets

import numpy as np
import pytest

from tests.support.cloud import aws, invoke, wait_for_status
from tests.support.parallel import REQUEST, expected, expected_accuracy, expected_scores
from trainer import model_file
from trainer.local.provision import provision_stack
from trainer.stores.run_store import DynamoRunStore

VARIANTS = {
    "chain": {},
    "w2": {"workers": 2},
    # 30 steps, 4 an invocation: every worker hands on 7 times, its successor rejoining where it stopped
    "w4": {"workers": 4, "max_steps_per_invocation": 4},
    "w4-f32-full": {"workers": 4, "dtype": "float32"},
    # a fifth of the training set held out, as the chain holds it out; every epoch scored on it
    "chain-val": {"validation_fraction": 0.2},
    "w2-val": {"workers": 2, "validation_fraction": 0.2, "checkpoint_every": 2},
}


@pytest.fixture(scope="module")
def runs(cloud_env) -> dict:
    stack = provision_stack("dp" + secrets.token_hex(3), trainer_memory_mb=1024)
    launched = {}
    for name, extra in VARIANTS.items():
        payload = {**REQUEST, **extra, "run_id": f"{name}-{secrets.token_hex(3)}"}
        if name.endswith("full"):
            payload.pop("batch_size")
        resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], payload)
        assert "FunctionError" not in resp, body
        launched[name] = payload
    items = {name: wait_for_status(cloud_env, stack["TABLE_NAME"], p["run_id"], 300) for name, p in launched.items()}
    out = {}
    for name, payload in launched.items():
        blob = aws("s3", cloud_env).get_object(
            Bucket=stack["MODEL_BUCKET"], Key=f"models/{payload['run_id']}/model.npz"
        )
        _, params, _, _ = model_file.load(blob["Body"].read())
        epochs = sorted(DynamoRunStore(stack["TABLE_NAME"]).epochs(payload["run_id"]), key=lambda e: e["epoch"])
        out[name] = {"payload": payload, "item": items[name], "params": params, "epochs": epochs}
    return out


def test_every_run_succeeds_with_its_model_and_history(runs) -> None:
    for name, run in runs.items():
        assert run["item"]["status"] == "SUCCEEDED", (name, run["item"])
        assert [e["epoch"] for e in run["epochs"]] == list(range(REQUEST["epochs"])), name


def test_two_and_four_workers_end_bit_identical_and_equal_the_reference(runs) -> None:
    two, four = runs["w2"], runs["w4"]
    assert {k: v.tobytes() for k, v in two["params"].items()} == {k: v.tobytes() for k, v in four["params"].items()}
    assert [float(e["cost"]) for e in two["epochs"]] == [float(e["cost"]) for e in four["epochs"]]
    for key in ("final_cost", "train_accuracy", "test_accuracy"):
        assert two["item"][key] == four["item"][key], key
    want_params, want_costs = expected(two["payload"])
    assert {k: v.tobytes() for k, v in four["params"].items()} == {k: v.tobytes() for k, v in want_params.items()}
    assert [float(e["cost"]) for e in four["epochs"]] == want_costs


def test_float32_full_batch_workers_equal_the_reference(runs) -> None:
    run = runs["w4-f32-full"]
    want_params, want_costs = expected(run["payload"])
    assert {k: v.tobytes() for k, v in run["params"].items()} == {k: v.tobytes() for k, v in want_params.items()}
    assert [float(e["cost"]) for e in run["epochs"]] == want_costs


def test_the_chain_agrees_with_the_workers_within_1e_9(runs) -> None:
    chain, four = runs["chain"], runs["w4"]
    np.testing.assert_allclose(
        [float(e["cost"]) for e in four["epochs"]], [float(e["cost"]) for e in chain["epochs"]], rtol=1e-9, atol=0
    )
    for name, value in chain["params"].items():
        np.testing.assert_allclose(four["params"][name], value, rtol=1e-9, atol=1e-12, err_msg=name)


def test_two_workers_score_every_epoch_on_the_held_out_examples_as_the_reference(runs) -> None:
    """Held out as the chain holds them out (the same examples), every epoch's validation cost and
    accuracy are the reference's bits, the weights too; the chain's agree within 1e-9. Every
    epoch's training `accuracy` (its batches' examples classified right as they met them, summed
    in the tree) is the reference's, and the chain's: a count, equal."""
    run, chain = runs["w2-val"], runs["chain-val"]
    want_params, want_costs = expected(run["payload"])
    assert {k: v.tobytes() for k, v in run["params"].items()} == {k: v.tobytes() for k, v in want_params.items()}
    assert [float(e["cost"]) for e in run["epochs"]] == want_costs
    scores = [(float(e["validation_cost"]), float(e["validation_accuracy"])) for e in run["epochs"]]
    assert scores == expected_scores(run["payload"])
    trained = [json.loads(r["item"]["config"])["examples"] for r in (run, chain)]
    assert trained == [360, 360]  # 450 less the fifth held out
    assert float(run["item"]["validation_accuracy"]) == scores[-1][1]
    chain_scores = [(float(e["validation_cost"]), float(e["validation_accuracy"])) for e in chain["epochs"]]
    np.testing.assert_allclose([c for c, _ in scores], [c for c, _ in chain_scores], rtol=1e-9, atol=0)
    assert [a for _, a in scores] == [a for _, a in chain_scores]
    assert float(run["item"]["validation_accuracy"]) == float(chain["item"]["validation_accuracy"])
    accuracy = [float(e["accuracy"]) for e in run["epochs"]]
    assert accuracy == expected_accuracy(run["payload"])
    assert accuracy == [float(e["accuracy"]) for e in chain["epochs"]]
