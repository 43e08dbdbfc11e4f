"""Exactly-once effects through the Lambda service's chaos mode: every hand-off delivered twice to
different execution environments at nearly the same moment, environments killed mid-invocation
and the events retried as Lambda retries them, copies delayed and reordered. Against the same
request run calmly, the run must leave the same weights, epoch items and checkpoints, one
SUCCEEDED message, one PROGRESS message per epoch and no FAILED message."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest

from tests.support.cloud import assert_sent_once, aws, invoke, messages_by_run, wait_for_status
from tests.support.requests import EVERY_EPOCH as BASE
from trainer.local.lambda_service import Chaos

SCENARIOS = {
    "per-step": ({"chain": "per_step"}, 21),
    "fused-small-budget": ({"chain": "fused", "max_steps_per_invocation": 3, "batch_size": 100}, 22),
    "minibatch-adam": ({"chain": "fused", "max_steps_per_invocation": 5, "optimizer": "adam", "batch_size": 64}, 23),
}


def _npz(cloud_env: dict[str, str], bucket: str, key: str) -> dict[str, np.ndarray]:
    body = aws("s3", cloud_env).get_object(Bucket=bucket, Key=key)["Body"].read()
    with np.load(io.BytesIO(body), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _left_behind(cloud_env: dict[str, str], stack: dict[str, str], run_id: str) -> dict[str, Any]:
    bucket = stack["MODEL_BUCKET"]
    items = aws("dynamodb", cloud_env).query(
        TableName=stack["TABLE_NAME"],
        KeyConditionExpression="pk = :pk AND begins_with(sk, :e)",
        ExpressionAttributeValues={":pk": {"S": f"RUN#{run_id}"}, ":e": {"S": "EPOCH#"}},
    )["Items"]
    listed = aws("s3", cloud_env).list_objects_v2(Bucket=bucket, Prefix=f"checkpoints/{run_id}/").get("Contents", [])
    return {
        "model": {k: v for k, v in _npz(cloud_env, bucket, f"models/{run_id}/model.npz").items() if k[0] in "Wb"},
        "epochs": sorted((int(i["epoch"]["N"]), i["cost"]["N"]) for i in items),
        "checkpoints": {o["Key"].rsplit("/", 1)[1]: _npz(cloud_env, bucket, o["Key"]) for o in listed},
    }


def _train(cloud, cloud_env, stack, request: dict, chaos: Chaos) -> tuple[dict, dict]:
    cloud.reset_stats()
    cloud.set_chaos(chaos)
    try:
        resp, launched = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], request)
        assert "FunctionError" not in resp, launched
        item = wait_for_status(cloud_env, stack["TABLE_NAME"], request["run_id"], timeout_s=300)
        cloud.wait_idle(timeout_s=300)
        return item, cloud.stats()
    finally:
        cloud.set_chaos(Chaos())


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_chaos_leaves_exactly_the_calm_runs_effects(cloud, cloud_env, chaos_stack, scenario: str) -> None:
    overrides, seed = SCENARIOS[scenario]
    request = {**BASE, **overrides}
    calm_id, stormy_id = f"calm-{scenario}", f"stormy-{scenario}"  # one stack for every scenario
    calm, _ = _train(cloud, cloud_env, chaos_stack, {**request, "run_id": calm_id}, Chaos())
    chaos = Chaos(seed=seed, duplicates=2, kill_probability=0.15, kill_window_s=0.03, max_delay_s=0.02)
    stormy, stats = _train(cloud, cloud_env, chaos_stack, {**request, "run_id": stormy_id}, chaos)
    print(f"\n[exactly once, {scenario}] {json.dumps({k: v for k, v in stats.items() if k != 'chaos'})}")
    assert calm["status"] == stormy["status"] == "SUCCEEDED", (calm, stormy)
    assert stats["overlapping_deliveries"] > 0 and stats["kills"] > 0 and stats["retries"] > 0

    expected, got = (_left_behind(cloud_env, chaos_stack, r) for r in (calm_id, stormy_id))
    assert expected["model"].keys() == got["model"].keys()
    assert all(np.array_equal(expected["model"][k], got["model"][k]) for k in expected["model"]), "weights"
    assert got["epochs"] == expected["epochs"] and len(got["epochs"]) == request["epochs"]
    assert got["checkpoints"].keys() == expected["checkpoints"].keys()
    assert len(got["checkpoints"]) == request["epochs"]
    for key, tensors in expected["checkpoints"].items():
        assert all(np.array_equal(got["checkpoints"][key][n], v) for n, v in tensors.items()), key
    for column in ("final_cost", "train_accuracy", "test_accuracy"):
        assert stormy[column] == calm[column]

    messages = messages_by_run(cloud_env, chaos_stack["MESSAGES_QUEUE_URL"])
    for run_id in (calm_id, stormy_id):
        kinds = messages[run_id]
        assert set(kinds["SUCCEEDED"]) == {None}, f"{run_id}: a SUCCEEDED message"
        assert sorted(set(kinds["PROGRESS"])) == list(range(request["epochs"])), f"{run_id}: PROGRESS of each epoch"
        assert_sent_once(cloud_env, chaos_stack["TABLE_NAME"], run_id, kinds)
        assert "FAILED" not in kinds and "CANCELLED" not in kinds
