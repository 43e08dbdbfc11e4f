"""A data-parallel run through the Lambda service in chaos mode: every worker event (the launch's
and each hand-on) delivered twice to different execution environments at nearly the same moment,
environments killed mid-invocation and retried as Lambda retries, copies delayed and reordered, on a
mixed fleet of hosts, and the workers' AWS calls throttled or failed (DynamoDB, S3, SNS) as the
fault campaign's are. It ends with its calm twin's weights, epoch history and figures."""

from __future__ import annotations

import json
import secrets

import pytest

from tests.support.cloud import FLEET, aws, invoke, wait_for_status
from tests.support.parallel import REQUEST
from trainer import model_file
from trainer.local.faults import FaultPlan
from trainer.local.lambda_service import Chaos
from trainer.local.provision import provision_stack
from trainer.stores.run_store import DynamoRunStore


@pytest.fixture(scope="module")
def stack(cloud_env) -> dict:
    return provision_stack("dpc" + secrets.token_hex(3), trainer_memory_mb=1024)


# As the fault campaign's: a run makes many DynamoDB calls (the workers' heartbeats), a few to S3
# and SNS, so each service sees some faults.
FAULTS = FaultPlan(seed=5, fractions={"dynamodb": 0.08, "s3": 0.2, "sns": 0.3})


def run(cloud, cloud_env, stack, run_id: str, chaos: Chaos, faults: FaultPlan) -> tuple[dict, dict, dict, list]:
    cloud.reset_stats()
    cloud.set_chaos(chaos)
    try:
        payload = {**REQUEST, "workers": 4, "max_steps_per_invocation": 6, "run_id": run_id}
        resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], payload)
        assert "FunctionError" not in resp, body
        cloud.set_faults(faults)  # after the launch: the client's own call is not the subject
        item = wait_for_status(cloud_env, stack["TABLE_NAME"], run_id, 400)
        cloud.wait_idle(timeout_s=400)
        stats = cloud.stats()
    finally:
        cloud.set_faults(FaultPlan())
        cloud.set_chaos(Chaos())
    blob = aws("s3", cloud_env).get_object(Bucket=stack["MODEL_BUCKET"], Key=f"models/{run_id}/model.npz")
    _, params, _, _ = model_file.load(blob["Body"].read())
    epochs = sorted(DynamoRunStore(stack["TABLE_NAME"]).epochs(run_id), key=lambda e: e["epoch"])
    return item, stats, params, [(int(e["epoch"]), float(e["cost"])) for e in epochs]


def test_a_data_parallel_run_under_chaos_ends_as_its_calm_twin(cloud, cloud_env, stack) -> None:
    calm_id = f"calm-{secrets.token_hex(3)}"
    calm, calm_stats, calm_params, calm_epochs = run(cloud, cloud_env, stack, calm_id, Chaos(), FaultPlan())
    assert calm["status"] == "SUCCEEDED" and calm_stats["duplicate_copies"] == 0
    chaos = Chaos(seed=5, duplicates=2, kill_probability=0.15, kill_window_s=0.03, max_delay_s=0.02, hosts=FLEET)
    stormy, stats, params, epochs = run(cloud, cloud_env, stack, f"stormy-{secrets.token_hex(3)}", chaos, FAULTS)
    print(f"\n[chaos data-parallel] {json.dumps({k: v for k, v in stats.items() if k != 'chaos'})}")
    assert stormy["status"] == "SUCCEEDED", stormy
    assert stats["duplicate_copies"] > 0 and stats["kills"] > 0, stats
    assert stats["aws_faults"]["injected_total"] > 0, stats["aws_faults"]
    assert {k: v.tobytes() for k, v in params.items()} == {k: v.tobytes() for k, v in calm_params.items()}
    assert epochs == calm_epochs
    for key in ("final_cost", "train_accuracy", "test_accuracy", "epochs"):
        assert stormy[key] == calm[key], key
