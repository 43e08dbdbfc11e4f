"""A training chain through the Lambda service in chaos mode: every hand-off delivered twice to
different execution environments at nearly the same moment, environments killed in the middle of
invocations and the events retried as Lambda retries them, copies delayed and reordered, and the
new environments placed on a mixed fleet of hosts."""

from __future__ import annotations

import io
import json

import numpy as np

from tests.support.cloud import (
    FLEET,
    assert_ran_pinned_on_a_mixed_fleet,
    aws,
    invoke,
    retire_environments,
    wait_for_status,
)
from tests.support.requests import moons
from trainer.local.lambda_service import Chaos

# Many hand-offs (max_steps_per_invocation): many points to disturb.
REQUEST = moons(
    (8, 1), ("relu", "sigmoid"), epochs=12, learning_rate=0.5, seed=7, chain="fused", max_steps_per_invocation=7
)


def trained_weights(cloud_env, stack, run_id: str) -> dict[str, np.ndarray]:
    body = aws("s3", cloud_env).get_object(Bucket=stack["MODEL_BUCKET"], Key=f"models/{run_id}/model.npz")["Body"]
    with np.load(io.BytesIO(body.read()), allow_pickle=False) as model:
        return {k: model[k] for k in model.files if k.startswith(("W", "b"))}


def train(cloud, cloud_env, stack, run_id: str, chaos: Chaos) -> tuple[dict, dict]:
    cloud.reset_stats()
    cloud.set_chaos(chaos)
    try:
        resp, launched = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], {**REQUEST, "run_id": run_id})
        assert "FunctionError" not in resp, launched
        item = wait_for_status(cloud_env, stack["TABLE_NAME"], run_id, timeout_s=300)
        cloud.wait_idle(timeout_s=300)
        return item, cloud.stats()
    finally:
        cloud.set_chaos(Chaos())


def test_a_chain_under_chaos_ends_with_the_undisturbed_weights(cloud, cloud_env, stack) -> None:
    # The shared stack's trainer starts afresh, as a new stack's would: the environments the calm
    # run starts are the only warm ones when the stormy run (and its mixed fleet) begins.
    retire_environments(stack["TRAINER_FUNCTION_NAME"])
    calm, calm_stats = train(cloud, cloud_env, stack, "calm-run", Chaos())
    assert calm["status"] == "SUCCEEDED", calm
    assert calm_stats["duplicate_copies"] == 0 and calm_stats["kills"] == 0
    chaos = Chaos(seed=11, duplicates=2, kill_probability=0.15, kill_window_s=0.03, max_delay_s=0.02, hosts=FLEET)
    stormy, stats = train(cloud, cloud_env, stack, "stormy-run", chaos)
    print(f"\n[chaos chain] {json.dumps({k: v for k, v in stats.items() if k != 'chaos'})}")
    assert stormy["status"] == "SUCCEEDED", stormy
    assert stats["duplicate_copies"] == stats["events_accepted"] and stats["overlapping_deliveries"] > 0
    assert stats["kills"] > 0 and stats["retries"] > 0
    assert_ran_pinned_on_a_mixed_fleet(stats)
    expected, got = trained_weights(cloud_env, stack, "calm-run"), trained_weights(cloud_env, stack, "stormy-run")
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert np.array_equal(expected[name], got[name]), name
