"""The fault-injection campaign on the local cloud: runs launched through LaunchLambda, the chain
handed on by the TrainerLambda in separate awslambdaric processes, disturbed from both sides at
once. The Lambda service in chaos mode delivers every hand-off two or three times to different
environments at nearly the same moment, kills environments in the middle of invocations (Lambda's
async retry follows) and delays and reorders copies; the emulator answers a seeded fraction of the
functions' DynamoDB, SNS and S3 requests with AWS's throttling and internal errors (some retried
by botocore, some reaching the handler as function errors). Every disturbed run must end SUCCEEDED
with the weights and epoch history of the same request run undisturbed, bit for bit. The figures
are printed at the end of the session (tests/conftest.py)."""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import pytest

from tests.support.cloud import assert_sent_once, aws, invoke, messages_by_run, run_item, wait_for_status
from tests.support.report import REPORT
from trainer.local.faults import FaultPlan
from trainer.local.lambda_service import Chaos

BASE = {
    "dataset": "circles",
    "neurons": {"layer1": 5, "layer2": 3, "layer3": 1},
    "activations": {"layer1": "tanh", "layer2": "relu", "layer3": "sigmoid"},
    "epochs": 5,
    "learning_rate": 0.05,
    "optimizer": "momentum",
    "batch_size": 80,
    "notify_every": 2,
}
CAMPAIGNS = range(4)
# Of the functions' requests that fail: a run makes hundreds of DynamoDB calls, tens to S3 and a
# handful to SNS, so that each service sees some faults in every campaign.
FAULT_FRACTIONS = {"dynamodb": 0.08, "s3": 0.2, "sns": 0.3}


def campaign(number: int) -> tuple[dict[str, Any], Chaos, FaultPlan]:
    """The campaign's request and disturbances, all drawn from its seed."""
    rng = random.Random(1000 + number)
    request = {
        **BASE,
        "chain": rng.choice(["per_step", "fused"]),
        "max_steps_per_invocation": rng.randint(3, 12),
        "seed": number,
    }
    # At least two copies of every hand-off: with one, three failed attempts in a row (AWS's
    # maximum of retries) would end the chain on AWS too, and a campaign is not about that.
    chaos = Chaos(
        seed=number,
        duplicates=rng.choice([2, 3]),
        kill_probability=0.1,
        kill_window_s=0.03,
        max_delay_s=0.02,
    )
    return request, chaos, FaultPlan(seed=number, fractions=FAULT_FRACTIONS)


def run(cloud, cloud_env, stack, request: dict[str, Any], chaos: Chaos, faults: FaultPlan) -> tuple[dict, dict]:
    """Launch (calmly: the client's own call is not the subject), disturb the chain, and wait until
    the Lambda service has nothing left to deliver; then the run item as it finally stands."""
    cloud.reset_stats()
    cloud.set_chaos(chaos)
    try:
        resp, launched = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], request)
        assert "FunctionError" not in resp, launched
        cloud.set_faults(faults)
        wait_for_status(cloud_env, stack["TABLE_NAME"], request["run_id"], timeout_s=300)
        cloud.wait_idle(timeout_s=300)  # late copies and retries are part of the run
        return run_item(cloud_env, stack["TABLE_NAME"], request["run_id"]), cloud.stats()
    finally:
        cloud.set_faults(FaultPlan())
        cloud.set_chaos(Chaos())


def outcome(cloud_env, stack, run_id: str) -> tuple[dict[str, np.ndarray], list[tuple[int, str]]]:
    """The model's weights and the run's epoch history."""
    body = aws("s3", cloud_env).get_object(Bucket=stack["MODEL_BUCKET"], Key=f"models/{run_id}/model.npz")["Body"]
    with np.load(io.BytesIO(body.read()), allow_pickle=False) as model:
        weights = {k: model[k] for k in model.files if k.startswith(("W", "b"))}
    items = aws("dynamodb", cloud_env).query(
        TableName=stack["TABLE_NAME"],
        KeyConditionExpression="pk = :pk AND begins_with(sk, :e)",
        ExpressionAttributeValues={":pk": {"S": f"RUN#{run_id}"}, ":e": {"S": "EPOCH#"}},
    )["Items"]
    return weights, sorted((int(i["epoch"]["N"]), i["cost"]["N"]) for i in items)


@pytest.mark.parametrize("number", CAMPAIGNS)
def test_disturbed_runs_end_identical(cloud, cloud_env, chaos_stack, number: int) -> None:
    request, chaos, faults = campaign(number)
    calm, _ = run(cloud, cloud_env, chaos_stack, {**request, "run_id": f"calm-{number}"}, Chaos(), FaultPlan())
    assert calm["status"] == "SUCCEEDED", calm
    stormy, stats = run(cloud, cloud_env, chaos_stack, {**request, "run_id": f"stormy-{number}"}, chaos, faults)

    (expected, expected_epochs), (got, got_epochs) = (
        outcome(cloud_env, chaos_stack, r) for r in (f"calm-{number}", f"stormy-{number}")
    )
    identical = (
        stormy["status"] == "SUCCEEDED"
        and expected.keys() == got.keys()
        and all(np.array_equal(expected[k], got[k]) for k in expected)
        and got_epochs == expected_epochs
    )
    messages = messages_by_run(cloud_env, chaos_stack["MESSAGES_QUEUE_URL"]).get(f"stormy-{number}", {})
    REPORT.record_campaign(f"{number} {request['chain']} x{chaos.duplicates}", stats, identical)

    injected = stats["aws_faults"]["injected_total"]
    assert injected > 0 and stats["kills"] > 0 and stats["overlapping_deliveries"] > 0, stats
    assert stormy["status"] == "SUCCEEDED", stormy
    assert expected and identical, f"run stormy-{number} ended with other weights or epochs than the calm run"
    assert len(messages.get("SUCCEEDED", [])) >= 1, f"a SUCCEEDED message, not {messages}"
    assert_sent_once(cloud_env, chaos_stack["TABLE_NAME"], f"stormy-{number}", messages)
