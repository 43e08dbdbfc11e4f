"""Resume (from the cache, or from an S3 checkpoint when the cache lost the run), STALLED runs,
and cancel: runs launched through LaunchLambda on the local cloud, their hand-offs delivered by the
test, resume and cancel asked of LaunchLambda as a user asks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.chain import (
    ChainStack,
    dead_letters,
    deliver_all,
    drain_queue,
    final_params,
    run_to_end,
    wait_for,
)
from tests.support.chain import same_params as _same  # the tests' name for it
from tests.support.cloud import FLEET, assert_ran_pinned_on_a_mixed_fleet, subscribe_queue
from tests.support.paths import REPO_ROOT
from tests.support.report import REPORT
from tests.support.requests import resumable
from trainer import lifecycle, model_file
from trainer.local import runner
from trainer.local.cloud_runner import LaunchRefused
from trainer.local.lambda_service import Chaos

PAYLOAD = resumable(epochs=8)


@pytest.fixture(scope="module")
def reference(stack) -> dict[str, np.ndarray]:
    run_id, _ = run_to_end(stack, PAYLOAD)
    return final_params(stack, run_id)


def _fail_after(stack: ChainStack, tmp_path: Path, deliveries: int) -> str:
    """Launch, deliver `deliveries` events, then make every commit crash until Lambda gives up on
    the next event (its two retries included)."""
    stack.drop_all()
    stack.failure_records()  # what earlier tests left there
    run_id = stack.launch(PAYLOAD)["run_id"]
    assert not any(d.failed for d in deliver_all(stack, limit=deliveries))
    stack.faults(tmp_path, [{"target": "tensor_store.commit"}])
    try:
        dead = dead_letters(deliver_all(stack))
    finally:
        stack.calm()
    assert dead and run_id in dead[0], dead
    (record,) = wait_for(stack.failure_records, what="the on-failure record")
    assert record["requestPayload"]["run_id"] == run_id
    return run_id


def test_a_failed_run_resumes_from_the_cache_bit_identical(stack, reference, tmp_path) -> None:
    run_id = _fail_after(stack, tmp_path, deliveries=3)
    run = stack.services.run_store.get_run(run_id)
    assert run["status"] == "FAILED" and "injected crash before tensor_store.commit" in run["failure_reason"]
    resumed = stack.launch({"action": "resume", "run_id": run_id})
    assert resumed["source"] == "cache"
    assert not dead_letters(deliver_all(stack))
    assert stack.services.run_store.get_run(run_id)["status"] == "SUCCEEDED"
    assert _same(final_params(stack, run_id), reference)
    REPORT.record(faults=1, identical=True)


def test_a_run_resumed_on_other_hosts_of_a_mixed_fleet_ends_bit_identical(stack, reference, tmp_path) -> None:
    """The run's environments before the failure, during it and after the resume each start on
    the next kind of host of a mixed fleet: the pinned kernel makes the resumed run end with the
    calm run's bits all the same."""
    stack.cloud.reset_stats()
    stack.cloud.set_chaos(Chaos(seed=3, hosts=FLEET))
    try:
        stack.calm()  # the trainer's warm environments retire: the next ones start on the fleet
        run_id = _fail_after(stack, tmp_path, deliveries=2)
        assert stack.launch({"action": "resume", "run_id": run_id})["source"] == "cache"
        assert not dead_letters(deliver_all(stack))
        stats = stack.cloud.stats()
    finally:
        stack.cloud.set_chaos(Chaos())
    assert stack.services.run_store.get_run(run_id)["status"] == "SUCCEEDED"
    assert_ran_pinned_on_a_mixed_fleet(stats)
    assert _same(final_params(stack, run_id), reference)
    REPORT.record(faults=1, identical=True)


def test_a_stalled_run_is_detected_and_resumes(stack, reference) -> None:
    stack.drop_all()
    run_id = stack.launch(PAYLOAD)["run_id"]
    deliver_all(stack, limit=4)
    assert stack.drop_all() == 1  # the hand-off was lost: nothing will ever deliver the next step
    run = stack.services.run_store.get_run(run_id)
    assert lifecycle.effective_status(run) == "RUNNING"
    assert lifecycle.effective_status(run, stall_after_s=60, now=time.time() + 61) == "STALLED"
    with pytest.raises(LaunchRefused, match="only FAILED or STALLED runs can resume"):
        stack.launch({"action": "resume", "run_id": run_id})
    # LaunchLambda waits 30 minutes before it calls a run STALLED; the same resume with no wait
    # (stack.services' invoker is the production one: the event goes to the trainer function).
    lifecycle.resume(stack.services, run_id, stall_after_s=0)
    assert not dead_letters(deliver_all(stack))
    assert _same(final_params(stack, run_id), reference)
    REPORT.record(faults=1, identical=True)


def test_a_run_whose_cache_was_lost_resumes_from_its_checkpoint(stack, reference) -> None:
    stack.drop_all()
    run_id = stack.launch(PAYLOAD)["run_id"]
    deliver_all(stack, limit=7)  # past the first checkpoint (epoch 2)
    assert stack.services.tensor_store.cursor(run_id) > 2 * (1 + 2 * 3)
    # A replaced cache node: same address, empty memory.
    stack.cloud.replace_node(stack.env["REPLICATION_GROUP_ID"])
    dead = dead_letters(deliver_all(stack))
    assert dead, "the run must fail cleanly, not carry on from nothing"
    wait_for(stack.failure_records, what="the on-failure record")
    run = stack.services.run_store.get_run(run_id)
    assert run["status"] == "FAILED" and run["failure_reason"].startswith("cache lost")
    resumed = stack.launch({"action": "resume", "run_id": run_id})
    assert resumed["source"].startswith("checkpoint")
    stack.cold()  # nothing of the run left in any environment's memory: all from the rebuilt cache
    try:
        assert not dead_letters(deliver_all(stack))
    finally:
        stack.calm()
    assert stack.services.run_store.get_run(run_id)["status"] == "SUCCEEDED"
    assert _same(final_params(stack, run_id), reference)
    REPORT.record(faults=1, identical=True)


def test_cancel_stops_the_run_and_removes_its_keys(stack) -> None:
    url = subscribe_queue(stack.services.notifier.topic_arn, "cancel-messages-q")
    stack.drop_all()
    run_id = stack.launch({**PAYLOAD, "chain": "per_step"})["run_id"]
    deliver_all(stack, limit=5)
    result = stack.launch({"action": "cancel", "run_id": run_id})
    assert result["status"] == "CANCELLED" and result["keys_removed"] > 0
    left = {k.decode().split(":")[2] for k in stack.services.tensor_store.run_keys(run_id)}
    assert left == {"cursor", "config", "cancel", "outbox", "handoff"}, "no tensor and no data is left"
    cursor = stack.services.tensor_store.cursor(run_id)
    deliveries = deliver_all(stack)
    assert len(deliveries) == 1 and not deliveries[0].failed, "the step in flight stops, nothing is handed on"
    assert stack.services.tensor_store.cursor(run_id) == cursor
    assert stack.services.run_store.get_run(run_id)["status"] == "CANCELLED"
    with pytest.raises(LaunchRefused, match="CANCELLED already"):
        stack.launch({"action": "cancel", "run_id": run_id})
    published = [m for m in drain_queue(url) if m["run_id"] == run_id]
    assert [m["kind"] for m in published] == ["CANCELLED"] and published[0]["epochs_done"] == 0
    with pytest.raises(LaunchRefused, match="only FAILED or STALLED"):
        stack.launch({"action": "resume", "run_id": run_id})


@pytest.mark.parametrize(
    ("payload", "named", "message"),
    [
        ({"action": "explode", "run_id": "x"}, "request", "action: 'explode' is not one of resume, cancel"),
        ({"action": "resume", "run_id": "no-such-run"}, "resume request", "no run 'no-such-run'"),
        ({"action": "cancel", "run_id": "../etc"}, "cancel request", "run_id: must be 1-64"),
        ({"action": "cancel", "run_id": "x", "force": True}, "cancel request", "force: unknown field"),
        ({"action": "cancel", "sweep_id": "no-such-sweep"}, "cancel request", "sweep_id: no sweep"),
    ],
)
def test_launch_actions_refuse_bad_requests(stack, payload, named, message) -> None:
    with pytest.raises(LaunchRefused) as refused:
        stack.launch(payload)
    # Named for what was asked, never "invalid training request".
    assert str(refused.value).startswith(f"invalid {named} (")
    assert message in str(refused.value)
    assert not stack.held()


def test_cli_resumes_a_failed_local_run(stack, reference, tmp_path) -> None:
    run_id = _fail_after(stack, tmp_path / "faults", deliveries=2)
    # What `python -m trainer train` leaves behind for a failed run: its record and its cache state.
    runner.export_run(stack, run_id, tmp_path)
    assert (tmp_path / run_id / "state.npz").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LAUNCH_FUNCTION_ARN"}
    env["LNN_RUNS_DIR"] = str(tmp_path)
    # The CLI's resume starts its own local cloud and stack, restores the run there and has its
    # LaunchLambda resume it.
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "resume", run_id],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["status"] == "SUCCEEDED"
    assert "(cache)" in done.stderr, done.stderr
    _, params, _, _ = model_file.load((tmp_path / run_id / "model.npz").read_bytes())
    assert _same(params, reference)
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "cancel", run_id],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "SUCCEEDED already" in done.stderr


def test_a_validating_run_resumed_from_its_checkpoint_records_the_same_epochs(stack) -> None:
    """A run's own validation split is drawn again from its fraction and seed when its resume reloads
    the data from the source: the resumed run's every epoch figure (training and validation cost
    and accuracy) and its model are the calm run's, bit for bit."""
    payload = {**PAYLOAD, "validation_fraction": 0.25, "seed": 4}
    calm_id, _ = run_to_end(stack, payload)
    run_id = stack.launch(payload)["run_id"]
    deliver_all(stack, limit=7)  # past the first checkpoint (epoch 2)
    stack.cloud.replace_node(stack.env["REPLICATION_GROUP_ID"])  # the cache lost the run, and its data
    assert dead_letters(deliver_all(stack)), "the run must fail cleanly, not carry on from nothing"
    wait_for(stack.failure_records, what="the on-failure record")
    assert stack.launch({"action": "resume", "run_id": run_id})["source"].startswith("checkpoint")
    assert not dead_letters(deliver_all(stack))

    def figures(of: str) -> list[dict]:
        epochs = sorted(stack.services.run_store.epochs(of), key=lambda e: e["epoch"])
        return [{k: v for k, v in e.items() if k not in ("pk", "sk", "duration_s")} for e in epochs]

    calm = figures(calm_id)
    assert [e["epoch"] for e in calm] == list(range(8))
    assert all({"cost", "accuracy", "validation_cost", "validation_accuracy"} <= set(e) for e in calm)
    assert calm[-1]["validation_cost"] < calm[0]["validation_cost"]  # it learns, and the split shows it
    assert figures(run_id) == calm
    assert _same(final_params(stack, run_id), final_params(stack, calm_id))
    runs = [stack.services.run_store.get_run(r) for r in (calm_id, run_id)]
    assert runs[0]["validation_accuracy"] == runs[1]["validation_accuracy"] is not None
