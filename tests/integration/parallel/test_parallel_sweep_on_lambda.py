"""A sweep whose trials are data-parallel, on the Lambda service: each trial starts as a
data-parallel run (one TrainerLambda invocation per worker, reducing through the cache), its
workers' finish ends the trial and hands its slot on, and the sweep ends with one summary. Two
trials at once of two workers each take the session cloud's whole account concurrency (4)."""

from __future__ import annotations

import json
import secrets
from types import SimpleNamespace

from tests.support.cloud import assert_sent_once, invoke, messages_by_run
from tests.support.parallel import REQUEST, assert_ends_as_the_reference
from trainer.stores.run_store import DynamoRunStore
from trainer.sweep import scheduler

WORKERS = 2
FRACTION = 0.2


def test_a_sweep_of_data_parallel_trials_ends_with_every_trial_equal_to_its_reference(cloud, cloud_env, stack) -> None:
    sweep_id = "dps-" + secrets.token_hex(3)
    request = {
        "action": "sweep",
        "sweep_id": sweep_id,
        "base": {**REQUEST, "workers": WORKERS, "max_steps_per_invocation": 7},
        "space": {"learning_rate": [0.02, 0.05, 0.1]},
        "strategy": "grid",
        "max_concurrency": 2,  # x 2 workers: the account's 4
        "validation_fraction": FRACTION,
        "seed": 1,  # the split's seed, the trials' own (the base leaves it at its default, 1)
    }
    resp, launched = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], request)
    assert "FunctionError" not in resp, launched
    assert launched["trials"] == 3 and len(launched["started"]) == 2
    cloud.wait_idle(timeout_s=300)

    store = DynamoRunStore(stack["TABLE_NAME"])
    status = scheduler.status(SimpleNamespace(run_store=store), sweep_id)
    assert status["status"] == "ENDED", status
    assert status["by_state"] == {"SUCCEEDED": 3}, status
    assert sorted(int(t["successor"]) for t in store.sweep_trials(sweep_id)) == [-1, -1, 2]
    for item in store.sweep_trials(sweep_id):
        trial = json.loads(item["request"])
        assert trial["workers"] == WORKERS
        run = store.get_run(item["run_id"])
        assert run["status"] == "SUCCEEDED", run
        assert {int(w) for w in run["worker_steps"]} == set(range(WORKERS))  # it ran as workers
        # its model and every epoch's cost and validation scores, bit for bit the reference's
        payload = {**trial, "run_id": item["run_id"], "validation_fraction": FRACTION, "seed": 1}
        assert_ends_as_the_reference(cloud_env, stack, payload)

    best = max(status["leaderboard"], key=lambda r: (r["validation_accuracy"], -r["trial"]))
    assert status["summary"]["best_trial"] == best["trial"]
    assert status["summary"]["best_run_id"] == best["run_id"]
    messages = messages_by_run(cloud_env, stack["MESSAGES_QUEUE_URL"])
    assert messages == {sweep_id: {"SWEEP_ENDED": [None]}}  # the sweep speaks for its trials
    assert_sent_once(cloud_env, stack["TABLE_NAME"], sweep_id, messages[sweep_id])
