"""A data-parallel run whose workers crash mid-step inside their execution environments (faults
injected at named points of the worker's arithmetic, tests/integration/functions.py) ends
bit-identical to the reference: Lambda's retry of the crashed worker rejoins at the newest step
every chunk has published, while the other workers wait for it (bounded)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from tests.support.chain import wait_for
from tests.support.cloud import invoke, run_item, wait_for_status
from tests.support.parallel import REQUEST, assert_ends_as_the_reference, faulty, retries, set_faults
from trainer.handlers import worker as worker_handler
from trainer.local.provision import provision_stack
from trainer.stores.items import public
from trainer.stores.run_store import DynamoRunStore


@pytest.fixture(scope="module")
def stack(cloud_env) -> dict:
    """One stack for the module, its trainer the faulty handler: each test sets its own plan, and
    the workers' warm environments serve every test, as they would on Lambda."""
    return faulty(cloud_env, provision_stack("dpf" + secrets.token_hex(3), trainer_memory_mb=1024))


@pytest.fixture(autouse=True)
def no_faults_after(cloud, stack) -> Iterator[None]:
    """Each test's plan ends with it: the next test's workers start calm."""
    yield
    set_faults(cloud, stack, None)


def test_workers_crashing_mid_step_are_retried_and_the_run_ends_identical(cloud, cloud_env, stack, tmp_path) -> None:
    # Two crashes, in whichever worker's environment gets there first: one before a step's partials
    # are computed, one after a chunk's update is computed and before it is published.
    points = [
        {"target": "trainer.parallel.step:worker_nodes", "skip": 7, "limit": 1},
        {"target": "trainer.parallel.step:owner_update", "skip": 12, "limit": 1, "before": False, "after": True},
    ]
    set_faults(cloud, stack, {"dir": str(tmp_path), "points": points, "record": []})
    payload = {**REQUEST, "workers": 4, "run_id": f"dpf-{secrets.token_hex(3)}"}
    resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], payload)
    assert "FunctionError" not in resp, body
    item = wait_for_status(cloud_env, stack["TABLE_NAME"], payload["run_id"], 300)
    injected = [json.loads(line) for line in (tmp_path / "injected").read_text().splitlines()]
    assert sorted(f["target"] for f in injected) == [
        "trainer.parallel.step:owner_update",
        "trainer.parallel.step:worker_nodes",
    ]
    assert item["status"] == "SUCCEEDED", item
    assert_ends_as_the_reference(cloud_env, stack, payload)


# worker_nodes(layout, params, activations, held, split, m, workers, worker): argument 7 is the worker
@pytest.mark.parametrize("lost", [{"if_arg": 7}, {"if_arg_is": [7, 0]}], ids=["a worker other than 0", "worker 0"])
def test_a_worker_lost_for_good_is_stood_in_for_and_the_run_ends_identical(
    cloud, cloud_env, stack, tmp_path, lost
) -> None:
    """No retry at all (the function's async retries set to 0): a worker crashes at its fourth step
    and never comes back; the others compute its part past the takeover bound, and one of them
    finishes the run (worker 0 is no coordinator the run waits for)."""
    points = [{"target": "trainer.parallel.step:worker_nodes", "skip": 3, "limit": 1, **lost}]
    set_faults(cloud, stack, {"dir": str(tmp_path), "points": points, "record": []})
    payload = {**REQUEST, "workers": 4, "run_id": f"dpl-{secrets.token_hex(3)}"}
    with retries(cloud_env, stack, 0):
        resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], payload)
        assert "FunctionError" not in resp, body
        item = wait_for_status(cloud_env, stack["TABLE_NAME"], payload["run_id"], 300)
    assert len((tmp_path / "injected").read_text().splitlines()) == 1
    assert item["status"] == "SUCCEEDED", item
    assert_ends_as_the_reference(cloud_env, stack, payload)


def test_a_finisher_lost_for_good_is_taken_over_and_the_run_ends_identical(cloud, cloud_env, stack, tmp_path) -> None:
    """No retry at all: whichever worker claims the finish crashes in it (at the test accuracy,
    before its commit) and never comes back, after every other worker has reported. The workers
    standing by for the finish take it over once the finisher's lease lapses: the run ends
    SUCCEEDED, identical to the reference, within the lease and the finish's own time, not at the
    STALLED sweep (30 minutes)."""
    points = [{"target": "trainer.engine:accuracy", "limit": 1}]  # called by a data-parallel finish only
    set_faults(cloud, stack, {"dir": str(tmp_path), "points": points, "record": []})
    payload = {**REQUEST, "workers": 4, "run_id": f"dpz-{secrets.token_hex(3)}"}
    with retries(cloud_env, stack, 0):
        resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], payload)
        assert "FunctionError" not in resp, body
        item = wait_for_status(cloud_env, stack["TABLE_NAME"], payload["run_id"], 300)
    injected = tmp_path / "injected"
    assert [json.loads(line)["target"] for line in injected.read_text().splitlines()] == ["trainer.engine:accuracy"]
    assert item["status"] == "SUCCEEDED", item
    stalled_for = float(item["finished_at"]) - injected.stat().st_mtime
    assert stalled_for < worker_handler.FINISH_LEASE_S + 30, stalled_for
    assert_ends_as_the_reference(cloud_env, stack, payload)


@pytest.mark.parametrize("validation", [0, 0.2], ids=["no-validation", "validation"])
def test_epoch_items_are_written_as_the_epochs_end_and_left_as_they_are(
    cloud, cloud_env, stack, tmp_path, validation
) -> None:
    """The finisher is held at its test accuracy (before its commit): every epoch's item is in the
    run's history already while the run is RUNNING (with held-out examples, every epoch's but the
    last, whose scores the finisher computes). Once the run ends, the history holds the same items,
    one per epoch, with the reference's costs and scores."""
    go = tmp_path / "go"
    points = [{"target": "trainer.engine:accuracy", "pause_until": str(go)}]  # the finish's, once
    set_faults(cloud, stack, {"dir": str(tmp_path), "points": points, "record": []})
    payload = {**REQUEST, "workers": 4, "run_id": f"dpe-{secrets.token_hex(3)}"}
    if validation:
        payload["validation_fraction"] = validation
    resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], payload)
    assert "FunctionError" not in resp, body
    history = DynamoRunStore(stack["TABLE_NAME"])
    try:
        wait_for(lambda: (tmp_path / "paused").exists(), timeout_s=180, what="the finisher held before its commit")
        during = {int(e["epoch"]): public(e) for e in history.epochs(payload["run_id"])}
        status = run_item(cloud_env, stack["TABLE_NAME"], payload["run_id"])["status"]
    finally:
        go.touch()
    item = wait_for_status(cloud_env, stack["TABLE_NAME"], payload["run_id"], 300)
    assert status == "RUNNING"
    epochs = REQUEST["epochs"]
    assert sorted(during) == list(range(epochs - 1 if validation else epochs)), during
    assert item["status"] == "SUCCEEDED", item
    after = {int(e["epoch"]): public(e) for e in history.epochs(payload["run_id"])}
    assert sorted(after) == list(range(epochs))
    assert {e: after[e] for e in during} == during, "an item written as its epoch ended is left as it is"
    assert_ends_as_the_reference(cloud_env, stack, payload)
