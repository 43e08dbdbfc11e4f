"""Resume (from the cache, or from an S3 checkpoint when the cache lost the run), STALLED runs,
and cancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.integration.chain.chain_helpers import REPORT, InjectedFault, deliver_all, final_params, run_to_end
from tests.integration.chain.test_adapters import _drain_queue, _subscribe_queue
from trainer import lifecycle
from trainer.errors import RequestError
from trainer.handlers import launch as launch_handler
from trainer.local import runner
from trainer.local.servers import RedisServer

PAYLOAD = {
    "dataset": "moons",
    "neurons": {"layer1": 6, "layer2": 1},
    "activations": {"layer1": "relu", "layer2": "sigmoid"},
    "epochs": 8,
    "learning_rate": 0.05,
    "optimizer": "adam",
    "batch_size": 100,
    "checkpoint_every": 2,
    "max_steps_per_invocation": 9,
}


@pytest.fixture(scope="module")
def reference(stack) -> dict[str, np.ndarray]:
    run_id, _ = run_to_end(stack, PAYLOAD)
    return final_params(stack, run_id)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _fail_after(stack, deliveries: int) -> str:
    """Launch, deliver `deliveries` events, then make every further step crash until Lambda gives up."""
    stack.invoker.queue.clear()
    run_id = runner.launch(stack, PAYLOAD)["run_id"]
    deliver_all(stack, limit=deliveries)
    original = stack.services.tensor_store.commit

    def broken(*args, **kwargs):
        raise InjectedFault("commit refused")

    stack.services.tensor_store.commit = broken
    try:
        dead = runner.drain(stack)
    finally:
        stack.services.tensor_store.commit = original
        del stack.services.tensor_store.commit
    assert dead and run_id in dead[0]
    return run_id


def test_a_failed_run_resumes_from_the_cache_bit_identical(stack, reference) -> None:
    run_id = _fail_after(stack, deliveries=3)
    run = stack.services.run_store.get_run(run_id)
    assert run["status"] == "FAILED" and "commit refused" in run["failure_reason"]
    resumed = lifecycle.resume(stack.services, run_id)
    assert resumed["source"] == "cache"
    deliver_all(stack)
    assert stack.services.run_store.get_run(run_id)["status"] == "SUCCEEDED"
    assert _same(final_params(stack, run_id), reference)
    REPORT.record(faults=1, identical=True)


def test_a_stalled_run_is_detected_and_resumes(stack, reference) -> None:
    stack.invoker.queue.clear()
    run_id = runner.launch(stack, PAYLOAD)["run_id"]
    deliver_all(stack, limit=4)
    stack.invoker.queue.clear()  # the hand-off was lost: nothing will ever deliver the next step
    run = stack.services.run_store.get_run(run_id)
    assert lifecycle.effective_status(run) == "RUNNING"
    assert lifecycle.effective_status(run, stall_after_s=60, now=time.time() + 61) == "STALLED"
    with pytest.raises(RequestError, match="only FAILED or STALLED runs can resume"):
        lifecycle.resume(stack.services, run_id)
    lifecycle.resume(stack.services, run_id, stall_after_s=0)
    deliver_all(stack)
    assert _same(final_params(stack, run_id), reference)
    REPORT.record(faults=1, identical=True)


@pytest.fixture
def own_redis(stack):
    """A redis-server this test may kill, and the stack wired to it; the session stack after."""
    server = RedisServer().start()
    local = runner.connect(
        "127.0.0.1", server.port, server.password, redis_tls=server.tls, redis_ca_file=server.ca_file
    )
    yield server, local
    server.stop()


def test_a_run_whose_cache_was_lost_resumes_from_its_checkpoint(own_redis, reference) -> None:
    server, local = own_redis
    run_id = runner.launch(local, PAYLOAD)["run_id"]
    deliver_all(local, limit=7)  # past the first checkpoint (epoch 2)
    assert local.services.tensor_store.cursor(run_id) > 2 * (1 + 2 * 3)
    # A replaced cache node: same address, empty memory.
    server.restart()
    dead = runner.drain(local)
    assert dead, "the run must fail cleanly, not carry on from nothing"
    run = local.services.run_store.get_run(run_id)
    assert run["status"] == "FAILED" and "lost its chain position" in run["failure_reason"]
    resumed = lifecycle.resume(local.services, run_id)
    assert resumed["source"].startswith("checkpoint")
    deliver_all(local)
    assert local.services.run_store.get_run(run_id)["status"] == "SUCCEEDED"
    assert _same(final_params(local, run_id), reference)
    REPORT.record(faults=1, identical=True)


def test_cancel_stops_the_run_and_removes_its_keys(stack) -> None:
    url = _subscribe_queue(stack.services.notifier.topic_arn, "cancel-messages-q")
    stack.invoker.queue.clear()
    run_id = runner.launch(stack, {**PAYLOAD, "chain": "per_step"})["run_id"]
    deliver_all(stack, limit=5)
    result = lifecycle.cancel(stack.services, run_id)
    assert result["status"] == "CANCELLED" and result["keys_removed"] > 0
    left = {k.decode().split(":")[2] for k in stack.services.tensor_store.run_keys(run_id)}
    assert left == {"cursor", "config", "cancel", "outbox", "handoff"}, "no tensor and no data is left"
    cursor = stack.services.tensor_store.cursor(run_id)
    deliveries = deliver_all(stack)
    assert deliveries == 1, "the step in flight stops, nothing is handed on"
    assert stack.services.tensor_store.cursor(run_id) == cursor
    assert stack.services.run_store.get_run(run_id)["status"] == "CANCELLED"
    with pytest.raises(RequestError, match="CANCELLED already"):
        lifecycle.cancel(stack.services, run_id)
    published = [m for m in _drain_queue(url) if m["run_id"] == run_id]
    assert [m["kind"] for m in published] == ["CANCELLED"] and published[0]["epochs_done"] == 0
    with pytest.raises(RequestError, match="only FAILED or STALLED"):
        lifecycle.resume(stack.services, run_id)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"action": "explode", "run_id": "x"}, "action: 'explode' is not one of resume, cancel"),
        ({"action": "resume", "run_id": "no-such-run"}, "no run 'no-such-run'"),
        ({"action": "cancel", "run_id": "../etc"}, "run_id: must be 1-64"),
        ({"action": "cancel", "run_id": "x", "force": True}, "force: unknown field"),
    ],
)
def test_launch_actions_refuse_bad_requests(stack, payload, message) -> None:
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(".", r"\.")):
        launch_handler.run(payload, runner.LocalContext(), stack.services)


def test_cli_resumes_a_failed_local_run(stack, reference, tmp_path) -> None:
    run_id = _fail_after(stack, deliveries=2)
    runner.export_run(stack, run_id, tmp_path)
    assert (tmp_path / run_id / "state.npz").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LAUNCH_FUNCTION_ARN"}
    env["LNN_RUNS_DIR"] = str(tmp_path)
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
    from trainer import model_file

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
