"""The chain equivalence of tests/integration/chain/test_chain.py on the real path: LaunchLambda invoked through
the Lambda API, every step run by the TrainerLambda in its own execution environments (the image's
Python), handed on by the production invoker. Costs and weights agree with plain numpy."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.chain import monolithic_reference
from tests.support.cloud import aws, calm, invoke, wait_for_status
from tests.support.requests import CHAIN_VARIANTS as VARIANTS
from tests.support.requests import chain_variant as _payload
from trainer import model_file
from trainer.stores.run_store import DynamoRunStore

CASES = [(variant, "fused") for variant in sorted(VARIANTS)] + [
    ("full-batch-gd", "per_step"),
    ("minibatch-adam-l2", "per_step"),
]


@pytest.fixture(scope="module")
def finished_runs(cloud, cloud_env, shared_stack) -> dict:
    """Every case launched at once (the service runs them side by side), then waited for."""
    stack = calm(cloud, shared_stack)
    launched = {}
    for variant, chain in CASES:
        payload = _payload(variant, chain, max_steps_per_invocation=7, run_id=f"{variant}-{chain}")
        resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], payload)
        assert "FunctionError" not in resp, body
        launched[(variant, chain)] = payload
    items = {case: wait_for_status(cloud_env, stack["TABLE_NAME"], p["run_id"]) for case, p in launched.items()}
    return {"env": cloud_env, "stack": stack, "payloads": launched, "items": items}


@pytest.mark.parametrize(("variant", "chain"), CASES)
def test_chain_on_the_lambda_service_agrees_with_monolithic_numpy(finished_runs, variant: str, chain: str) -> None:
    payload, run = finished_runs["payloads"][(variant, chain)], finished_runs["items"][(variant, chain)]
    stack, env = finished_runs["stack"], finished_runs["env"]
    assert run["status"] == "SUCCEEDED", run
    expected_params, expected_costs = monolithic_reference(payload)
    tolerance = 1e-9 if payload.get("dtype", "float64") == "float64" else 1e-5
    assert float(run["final_cost"]) == pytest.approx(expected_costs[-1], abs=tolerance)
    epochs = sorted(DynamoRunStore(stack["TABLE_NAME"]).epochs(payload["run_id"]), key=lambda e: e["epoch"])
    assert [e["epoch"] for e in epochs] == list(range(payload["epochs"]))
    np.testing.assert_allclose([e["cost"] for e in epochs], expected_costs, atol=tolerance)
    blob = aws("s3", env).get_object(Bucket=stack["MODEL_BUCKET"], Key=f"models/{payload['run_id']}/model.npz")
    _, got, _, _ = model_file.load(blob["Body"].read())
    for name, value in expected_params.items():
        np.testing.assert_allclose(got[name], value, atol=tolerance, rtol=0, err_msg=name)
