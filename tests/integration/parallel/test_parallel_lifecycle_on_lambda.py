"""Cancel, failure and resume of data-parallel runs on the local Lambda service: the workers stop
together at their next step when the run is cancelled or failed, a worker's error that comes back
fails the run (once, with its reason), and a run whose cache was lost resumes and ends as its calm
twin."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest

from tests.support.cloud import aws, invoke, messages_by_run, run_item, subscribe_queue, wait_for_status
from tests.support.parallel import REQUEST, assert_ends_as_the_reference, faulty, set_faults
from trainer import keys
from trainer.handlers.worker import HEARTBEAT_S
from trainer.local.cloud_runner import session_services
from trainer.local.provision import provision_stack
from trainer.stores.reduction_store import ReductionStore

# Long enough (2,000 steps, one invocation per worker) that a cancel lands mid-run.
LONG = {**REQUEST, "epochs": 400, "workers": 4}
# After a cancel or a failure, every worker's invocation ends within this (a step and a wake-up;
# without the stop, the workers would run on for the rest of the run's 2,000 steps).
STOPPED_WITHIN_S = 10.0
# Where Lambda's retries must end too (the workers a failure or the lost cache stopped, each retried
# and finding the run over), or the test only needs the last generation gone before it goes on: a
# worker that was waiting for the others when the cache went ends within a blocking read (it looks
# for the run's cursor: reduction_store), not at its bound (WAIT_S, a minute), and each retry may
# start an environment, which a machine the whole suite keeps busy takes seconds to do.
SETTLED_WITHIN_S = 60.0
WORKER_NODES = "trainer.parallel.step:worker_nodes"


@pytest.fixture(scope="module")
def stack(cloud_env) -> dict:
    return provision_stack("dpc" + secrets.token_hex(3), trainer_memory_mb=1024)


@pytest.fixture(scope="module")
def services(cloud, stack):
    return session_services(stack, str(Path(cloud.workdir) / "elasticache-ca.pem"))


def launch(cloud_env, stack: dict, payload: dict) -> None:
    resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], payload)
    assert "FunctionError" not in resp, body


def wait_for_step(services, payload: dict, step: int, timeout_s: float = 120) -> None:
    """Until every chunk of the run has published step `step` (the reduction's own record)."""
    store = ReductionStore(services.tensor_store.client, payload["run_id"], payload["workers"], "float64")
    deadline = time.monotonic() + timeout_s
    while store.resume_point() < step:
        assert time.monotonic() < deadline, f"the workers did not reach step {step}"
        time.sleep(0.05)


def no_model(cloud_env, stack: dict, run_id: str) -> bool:
    listed = aws("s3", cloud_env).list_objects_v2(Bucket=stack["MODEL_BUCKET"], Prefix=f"models/{run_id}/")
    return listed.get("KeyCount", 0) == 0


def test_a_cancel_stops_every_worker_at_its_next_step(cloud, cloud_env, stack, services) -> None:
    url = subscribe_queue(stack["SNS_TOPIC_ARN"], "dp-cancel-q")
    payload = {**LONG, "run_id": f"dpc-{secrets.token_hex(3)}"}
    launch(cloud_env, stack, payload)
    try:
        cancel_and_check(cloud, cloud_env, stack, services, payload, url)
    finally:
        # A failed check must not leave 2,000 steps of four workers to the tests after it.
        invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], {"action": "cancel", "run_id": payload["run_id"]})


def worker_steps(cloud_env, stack: dict, payload: dict) -> set[str]:
    """The workers whose step the run's item shows (their heartbeats)."""
    return set(run_item(cloud_env, stack["TABLE_NAME"], payload["run_id"]).get("worker_steps", {}))


def cancel_and_check(cloud, cloud_env, stack: dict, services, payload: dict, url: str) -> None:
    wait_for_step(services, payload, 20)
    # A heartbeat is best effort, at a worker's first step and then every HEARTBEAT_S: one that a
    # busy table delayed or failed comes with the next.
    deadline = time.monotonic() + 2 * HEARTBEAT_S
    while (beating := worker_steps(cloud_env, stack, payload)) != {"0", "1", "2", "3"}:
        assert time.monotonic() < deadline, f"every worker's heartbeat names its step: {beating}"
        time.sleep(0.2)
    resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], {"action": "cancel", "run_id": payload["run_id"]})
    assert "FunctionError" not in resp and body["status"] == "CANCELLED", body
    cancelled_at = time.monotonic()
    cloud.wait_idle(timeout_s=STOPPED_WITHIN_S)  # every worker's invocation ended, none retried
    stopped_s = time.monotonic() - cancelled_at
    item = run_item(cloud_env, stack["TABLE_NAME"], payload["run_id"])
    assert item["status"] == "CANCELLED", item
    assert no_model(cloud_env, stack, payload["run_id"])
    left = {k.decode().split(":")[2] for k in services.tensor_store.run_keys(payload["run_id"])}
    assert left <= {"cursor", "config", "cancel", "stop"}, f"no tensor, data or reduction key is left: {left}"
    kinds = messages_by_run(cloud_env, url).get(payload["run_id"], {})
    assert {k: len(v) for k, v in kinds.items()} == {"CANCELLED": 1}, kinds
    print(f"workers all stopped {stopped_s:.2f} s after the cancel")


def test_a_worker_error_that_comes_back_fails_the_run_once_and_stops_every_worker(cloud, cloud_env, tmp_path) -> None:
    """Every worker's partials raise past its tenth step, in every environment and retry: an error
    that comes back (not a lost worker the others can stand in for) is the run's. It is FAILED with
    the error as its reason, one FAILED message, no model, and no worker runs on."""
    stack = provision_stack("dpe" + secrets.token_hex(3), trainer_memory_mb=1024)
    url = subscribe_queue(stack["SNS_TOPIC_ARN"], "dp-fail-q")
    plan = {"dir": str(tmp_path), "points": [{"target": WORKER_NODES, "skip": 10}]}
    set_faults(cloud, faulty(cloud_env, stack), plan)
    payload = {**LONG, "run_id": f"dpe-{secrets.token_hex(3)}"}
    launch(cloud_env, stack, payload)
    item = wait_for_status(cloud_env, stack["TABLE_NAME"], payload["run_id"], 120)
    failed_at = time.monotonic()
    assert item["status"] == "FAILED", item
    assert item["failure_reason"] == f"InjectedFault: injected crash before {WORKER_NODES}", item
    assert item["failed_step"].startswith("dp_worker#"), item
    cloud.wait_idle(timeout_s=SETTLED_WITHIN_S)  # the others stopped, the retries found the run failed
    print(f"workers all stopped {time.monotonic() - failed_at:.2f} s after the failure")
    assert no_model(cloud_env, stack, payload["run_id"])
    kinds = messages_by_run(cloud_env, url).get(payload["run_id"], {})
    assert {k: len(v) for k, v in kinds.items()} == {"FAILED": 1}, kinds


def checkpoint_epochs(services, run_id: str) -> list[int]:
    return sorted(keys.checkpoint_epoch(key) for key in services.blob_store.keys(keys.checkpoint_prefix(run_id)))


@pytest.mark.parametrize(
    ("checkpoint_every", "validation", "flush_at"),
    [(0, 0.0, 105), (10, 0.0, 105), (10, 0.2, 84)],
    ids=["no-checkpoint", "checkpoint", "checkpoint-validation"],
)
def test_a_run_whose_cache_was_lost_fails_resumes_and_ends_as_its_calm_twin(
    cloud, cloud_env, stack, services, checkpoint_every, validation, flush_at
) -> None:
    """Flushed at step 105 of 300 (5 steps an epoch: epochs 0 … 20 done) or later, the run fails,
    and resumes from its newest epoch checkpoint (worker 0 writes one every `checkpoint_every`
    epochs), or from its seeded start when it writes none. With a fifth of the examples held out (4
    steps an epoch, flushed at step 84: epochs 0 … 20 done), the checkpoint brings back the
    validation scores of the epochs before it, and every epoch's scores are the reference's."""
    url = subscribe_queue(stack["SNS_TOPIC_ARN"], f"dp-resume-{checkpoint_every}-{int(validation * 10)}-q")
    run_id = f"dpr-{secrets.token_hex(3)}"
    payload = {**REQUEST, "epochs": 60, "workers": 4, "checkpoint_every": checkpoint_every, "run_id": run_id}
    if validation:
        payload["validation_fraction"] = validation
    launch(cloud_env, stack, payload)
    wait_for_step(services, payload, flush_at)
    written = checkpoint_epochs(services, run_id)
    assert written[:2] == ([9, 19] if checkpoint_every else []), written
    # The workers run on until the node is gone: on a loaded machine they may write another
    # checkpoint first, and the resume must then take that one.
    cloud.replace_node(stack["REPLICATION_GROUP_ID"])  # a replaced cache node: same address, empty memory
    item = wait_for_status(cloud_env, stack["TABLE_NAME"], payload["run_id"], 120)
    # A worker that reads while the node is being replaced finds no answer ("cache unavailable"),
    # one that reads after finds it empty ("cache lost"): which comes first is the machine's load.
    # Either fails the run, and either is resumed the same way.
    assert item["status"] == "FAILED", item
    assert item["failure_reason"].startswith(("cache lost", "cache unavailable")), item
    cloud.wait_idle(timeout_s=SETTLED_WITHIN_S)
    written = checkpoint_epochs(services, run_id)
    assert bool(written) == bool(checkpoint_every), written
    source = f"checkpoint (epoch {written[-1]})" if written else "seeded start"
    resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], {"action": "resume", "run_id": payload["run_id"]})
    assert "FunctionError" not in resp, body
    assert body["status"] == "RUNNING" and body["source"] == source, body
    item = wait_for_status(cloud_env, stack["TABLE_NAME"], payload["run_id"], 300)
    assert item["status"] == "SUCCEEDED", item
    assert_ends_as_the_reference(cloud_env, stack, payload)
    cloud.wait_idle(timeout_s=SETTLED_WITHIN_S)
    kinds = messages_by_run(cloud_env, url).get(payload["run_id"], {})
    assert {k: len(v) for k, v in kinds.items()} == {"FAILED": 1, "SUCCEEDED": 1}, kinds


def test_a_stalled_run_whose_workers_all_vanished_resumes_and_ends_as_its_calm_twin(cloud, cloud_env, tmp_path) -> None:
    """Every worker's environment stops answering at its 41st step (paused, then killed by the
    function's timeout) and no retry comes (retries 0): nobody is left to stand in, nothing fails
    the run, and it is RUNNING with a heartbeat that ages, STALLED to a resume that says so. The
    resume starts the next generation from the run's seeded start (it writes no checkpoint), and
    the run ends as its calm twin, with one message (SUCCEEDED) and none from the vanished one."""
    stack = provision_stack(
        "dps" + secrets.token_hex(3), trainer_memory_mb=1024, trainer_timeout_s=10, max_retry_attempts=0
    )
    url = subscribe_queue(stack["SNS_TOPIC_ARN"], "dp-stalled-q")
    # Four pauses, one a worker: the resumed generation's environments find every slot taken.
    point = {"target": WORKER_NODES, "skip": 40, "limit": 4, "pause_until": str(tmp_path / "never")}
    set_faults(cloud, faulty(cloud_env, stack), {"dir": str(tmp_path), "points": [point]})
    payload = {**REQUEST, "epochs": 60, "workers": 4, "time_margin_ms": 3000, "run_id": f"dps-{secrets.token_hex(3)}"}
    launch(cloud_env, stack, payload)
    cloud.wait_idle(timeout_s=60)  # every worker's invocation ended by its timeout
    assert len((tmp_path / "paused").read_text().splitlines()) == 4
    item = run_item(cloud_env, stack["TABLE_NAME"], payload["run_id"])
    assert item["status"] == "RUNNING", item
    resume = {"action": "resume", "run_id": payload["run_id"]}
    resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], resume)  # not stalled by the default 30 min
    assert resp.get("FunctionError") and "only FAILED or STALLED" in json.dumps(body), body
    time.sleep(1.5)  # the heartbeat older than the resume's threshold below
    resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], {**resume, "stall_after_s": 1})
    assert "FunctionError" not in resp, body
    assert (body["status"], body["source"]) == ("RUNNING", "seeded start"), body
    item = wait_for_status(cloud_env, stack["TABLE_NAME"], payload["run_id"], 300)
    assert item["status"] == "SUCCEEDED", item
    assert_ends_as_the_reference(cloud_env, stack, payload)
    cloud.wait_idle(timeout_s=SETTLED_WITHIN_S)
    kinds = messages_by_run(cloud_env, url).get(payload["run_id"], {})
    assert {k: len(v) for k, v in kinds.items()} == {"SUCCEEDED": 1}, kinds
