"""The control plane's exactly-once: launch, resume and cancel racing each other and the finish, a
cache that loses the run mid-invocation, a LaunchLambda that dies mid-launch or mid-resume, and
forged events. One deterministic test per defect of issue 21, each an interleaving forced through
the held deliveries (a trainer copy paused inside its execution environment until the test says
go), or a LaunchLambda step stopped where the race needs it, against the run's transition table
(trainer/README.md): of two racing moves exactly one wins and every effect follows the winner."""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import redis

from tests.support.chain import (
    ChainStack,
    Delivery,
    dead_letters,
    deliver_all,
    drain_queue,
    final_params,
    read_lines,
    reference_params,
    run_to_end,
    wait_for,
)
from tests.support.chain import same_params as _same  # the tests' name for it
from tests.support.cloud import subscribe_queue
from tests.support.report import REPORT
from tests.support.requests import resumable
from trainer import checkpoints, lifecycle
from trainer.aws import client
from trainer.errors import RequestError
from trainer.handlers import launch as launch_handler
from trainer.handlers import trainer as trainer_handler
from trainer.local.cloud_runner import LaunchRefused
from trainer.runconfig import RunConfig
from trainer.statemachine import next_event, parse_event
from trainer.stores.run_store import CHECKPOINTS

PAYLOAD = resumable(epochs=6)


@pytest.fixture(scope="module")
def reference(stack) -> dict[str, np.ndarray]:
    return reference_params(stack, PAYLOAD)


@pytest.fixture(scope="module")
def queue(stack) -> str:
    return subscribe_queue(stack.services.notifier.topic_arn, "control-plane-messages")


@pytest.fixture
def mailbox(queue) -> Callable[[str], list[str]]:
    """The kinds of the messages a run has received so far (the queue drained into a shared box)."""
    box: dict[str, list[str]] = {}
    drain_queue(queue)  # what earlier tests left

    def kinds(run_id: str) -> list[str]:
        for message in drain_queue(queue):
            box.setdefault(message["run_id"], []).append(message["kind"])
        return sorted(box.get(run_id, []))

    return kinds


def _run(stack: ChainStack, run_id: str) -> dict[str, Any]:
    return stack.services.run_store.get_run(run_id)


def _has_model(stack: ChainStack, run_id: str) -> bool:
    return bool(stack.services.blob_store.keys(f"models/{run_id}/"))


class _Hooked:
    """An adapter whose method `name` first runs `before` (once): a step of another caller forced in
    at exactly that point of this caller's life."""

    def __init__(self, inner: Any, name: str, before: Callable[[], None]) -> None:
        self._inner, self._name, self._before, self.fired = inner, name, before, False

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._inner, attr)
        if attr != self._name or self.fired:
            return value

        def hooked(*args: Any, **kwargs: Any) -> Any:
            self.fired = True
            self._before()
            return value(*args, **kwargs)

        return hooked


class _Died(BaseException):
    """The LaunchLambda's environment ending mid-request: no handler of the code's runs after it."""


class _DyingInvoker:
    def invoke_async(self, event: dict[str, Any]) -> None:
        raise _Died("the environment died before the first event went out")


def _lose_the_cache_after_a_checkpoint(stack: ChainStack) -> str:
    """A run past its first checkpoint whose cache state is then gone and whose next step failed:
    FAILED, resumable from the checkpoint only."""
    stack.drop_all()
    stack.failure_records()
    run_id = stack.launch(PAYLOAD)["run_id"]
    while checkpoints.latest(stack.services.blob_store, run_id) is None:
        assert not stack.deliver().failed
    stack.services.tensor_store.delete_run(run_id, keep_cursor=False)
    assert dead_letters(deliver_all(stack))
    assert _run(stack, run_id)["status"] == "FAILED"
    return run_id


def _deliver_in_background(stack: ChainStack, request_id: str) -> tuple[threading.Thread, list[Delivery]]:
    ended: list[Delivery] = []
    thread = threading.Thread(target=lambda: ended.append(stack.deliver(request_id)))
    thread.start()
    return thread, ended


# -- defect 6: two launches with one run id ---------------------------------------------------------
def test_a_launch_refused_for_a_taken_run_id_writes_nothing(stack, reference) -> None:
    """The second launch passed its checks before the first claimed the id (its check found the id
    free), then went on after: it must be refused without writing anything into the first run's
    cache keys, and the first run trains on its own data."""
    run_id = "dup-" + secrets.token_hex(4)
    other = {**PAYLOAD, "dataset": "circles", "run_id": run_id}
    validated = launch_handler.validate(other, stack.services)  # the id was free when it checked
    stack.drop_all()
    stack.launch({**PAYLOAD, "run_id": run_id})
    data_before = stack.services.tensor_store.get_data(run_id, ["x_train", "y_train"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(launch_handler, "validate", lambda payload, svc: validated)
        with pytest.raises(RequestError, match="already exists"):
            launch_handler.launch(other, stack.services)
    data_after = stack.services.tensor_store.get_data(run_id, ["x_train", "y_train"])
    assert _same(data_after, data_before), "the refused launch wrote its data into the run's keys"
    assert len(stack.held()) == 1, "the refused launch sent an event"
    assert not dead_letters(deliver_all(stack))
    assert _run(stack, run_id)["status"] == "SUCCEEDED"
    assert _same(final_params(stack, run_id), reference)


# -- defect 4: cancel racing resume -----------------------------------------------------------------
@pytest.mark.parametrize("cancel_lands", ["before-the-resume-moves", "after-the-resume-moved"])
def test_cancel_racing_resume_has_one_winner_and_the_run_ends_cancelled(stack, mailbox, cancel_lands) -> None:
    """A cancel sent while a resume is under way. Before the resume's move (it has read the run
    FAILED, nothing more): the cancel wins and the resume is refused. After it (the resume is
    rebuilding the cache): both are accepted, in that order, and the cancel stops the resumed chain.
    Either way the run ends CANCELLED, with no model and one message, CANCELLED."""
    run_id = _lose_the_cache_after_a_checkpoint(stack)
    answers: list[dict[str, Any]] = []
    cancel = lambda: answers.append(stack.launch({"action": "cancel", "run_id": run_id}))  # noqa: E731
    # The resume reads the cache's cursor right after it checked the status; it writes the data only
    # after its move (the cache lost the run, so the rebuild starts with the data).
    hook = "cursor" if cancel_lands == "before-the-resume-moves" else "put_data"
    svc = dataclasses.replace(stack.services, tensor_store=_Hooked(stack.services.tensor_store, hook, cancel))
    if cancel_lands == "before-the-resume-moves":
        with pytest.raises(RequestError, match="it is CANCELLED"):
            lifecycle.resume(svc, run_id)
    else:
        assert lifecycle.resume(svc, run_id)["status"] == "RUNNING"
    assert [a["status"] for a in answers] == ["CANCELLED"]
    deliveries = deliver_all(stack)
    assert all(d.copies[0]["response"]["status"] == "CANCELLED" for d in deliveries), "the chain went on"
    assert not stack.held()
    run = _run(stack, run_id)
    assert run["status"] == "CANCELLED"
    assert not _has_model(stack, run_id)
    assert not [k for k in stack.services.tensor_store.run_keys(run_id) if b":data:" in k or b":t:" in k]
    assert mailbox(run_id) == ["CANCELLED", "FAILED"]  # FAILED: the cache loss that made it resumable


# -- defect 5: cancel during the finish ---------------------------------------------------------------
def test_a_cancel_during_the_finish_leaves_no_model_and_no_succeeded(stack, tmp_path, mailbox) -> None:
    """The finish's completion paused just before it marks the run SUCCEEDED; the cancel lands
    there. The cancel wins: no model, no SUCCEEDED message, status CANCELLED; and the other order
    (the finish first) refuses the cancel."""
    payload = {**PAYLOAD, "checkpoint_every": 0, "max_steps_per_invocation": 1000}
    stack.drop_all()
    run_id = stack.launch(payload)["run_id"]
    go = tmp_path / "go"
    stack.faults(tmp_path, [{"target": "run_store.mark_succeeded", "pause_until": str(go)}])
    try:
        thread, ended = _deliver_in_background(stack, stack.held()[0]["request_id"])
        wait_for(lambda: read_lines(tmp_path / "paused"), what="the finish paused before its SUCCEEDED")
        assert stack.launch({"action": "cancel", "run_id": run_id})["status"] == "CANCELLED"
        go.touch()
        thread.join(timeout=120)
    finally:
        stack.calm()
    (delivery,) = ended
    assert not delivery.failed, delivery.errors
    assert not deliver_all(stack)
    assert _run(stack, run_id)["status"] == "CANCELLED"
    assert not _has_model(stack, run_id), "a cancelled run wrote its model"
    assert mailbox(run_id) == ["CANCELLED"]

    finished, _ = run_to_end(stack, payload)
    with pytest.raises(LaunchRefused, match="SUCCEEDED already"):
        stack.launch({"action": "cancel", "run_id": finished})
    assert _run(stack, finished)["status"] == "SUCCEEDED"
    assert mailbox(finished) == ["SUCCEEDED"]


# -- defect 3: a forged event -------------------------------------------------------------------------
def test_an_event_not_in_the_plan_changes_nothing(stack, reference, mailbox) -> None:
    """An event with the run's next seq but a layer the plan does not have there, sent to the
    trainer as anyone with invoke rights could: an error, and the run goes on as if it never came
    (status RUNNING, no FAILED message, no failure reason), ending as the undisturbed run."""
    stack.drop_all()
    run_id = stack.launch(PAYLOAD)["run_id"]
    assert not stack.deliver().failed
    (real,) = stack.held()
    forged = {**real["payload"], "layer": real["payload"]["layer"] + 5}
    client("lambda").invoke(FunctionName=stack.trainer, InvocationType="Event", Payload=json.dumps(forged).encode())
    (held,) = [e for e in stack.held() if e["payload"] == forged]
    delivery = stack.deliver(held["request_id"])
    assert delivery.failed and all("does not match the run's plan" in e for e in delivery.errors), delivery.errors
    run = _run(stack, run_id)
    assert run["status"] == "RUNNING" and "failure_reason" not in run
    assert not dead_letters(deliver_all(stack))
    run = _run(stack, run_id)
    assert run["status"] == "SUCCEEDED" and "failure_reason" not in run
    assert _same(final_params(stack, run_id), reference)
    assert mailbox(run_id) == ["SUCCEEDED"]


# -- defect 8: a LaunchLambda that dies mid-launch or mid-resume ------------------------------------
def test_a_launch_whose_launch_lambda_died_completes_when_sent_again(stack, reference) -> None:
    """The launch's environment dies after the run's record and state, before its first event: the
    same request sent again completes the hand-off, and the run ends as the undisturbed one. A
    different request for that id is still refused."""
    stack.drop_all()
    run_id = "retry-" + secrets.token_hex(4)
    request = {**PAYLOAD, "run_id": run_id}
    dying = dataclasses.replace(stack.services, invoker=_DyingInvoker())
    with pytest.raises(_Died):
        launch_handler.launch(request, dying)
    assert _run(stack, run_id)["status"] == "RUNNING" and not stack.held()
    with pytest.raises(LaunchRefused, match="already exists"):
        stack.launch({**request, "epochs": 7})
    assert stack.launch(request)["run_id"] == run_id
    assert not dead_letters(deliver_all(stack))
    assert _run(stack, run_id)["status"] == "SUCCEEDED"
    assert _same(final_params(stack, run_id), reference)
    with pytest.raises(LaunchRefused, match="already exists"):
        stack.launch(request)  # launched and done: a repeat is a new launch with a taken id


def test_a_resume_whose_launch_lambda_died_completes_when_sent_again(stack, reference) -> None:
    """The resume's environment dies after its move to RUNNING, before its first event: the resume
    sent again completes the hand-off, and the run ends as the undisturbed one."""
    run_id = _lose_the_cache_after_a_checkpoint(stack)
    dying = dataclasses.replace(stack.services, invoker=_DyingInvoker())
    with pytest.raises(_Died):
        lifecycle.resume(dying, run_id)
    assert _run(stack, run_id)["status"] == "RUNNING" and not stack.held()
    resumed = stack.launch({"action": "resume", "run_id": run_id})
    assert resumed["source"].startswith("checkpoint") or resumed["source"] == "cache"
    assert not dead_letters(deliver_all(stack))
    assert _run(stack, run_id)["status"] == "SUCCEEDED"
    assert _same(final_params(stack, run_id), reference)
    with pytest.raises(LaunchRefused, match="only FAILED or STALLED"):
        stack.launch({"action": "resume", "run_id": run_id})


def test_a_run_whose_cache_was_lost_before_its_first_checkpoint_resumes_from_its_seeded_start(
    stack, reference, mailbox
) -> None:
    """Nothing durable of the run's state yet, but its seed: the resume starts it again from the
    initial state the seed draws, and the run ends as the undisturbed one, with one FAILED message."""
    stack.drop_all()
    stack.failure_records()
    run_id = stack.launch(PAYLOAD)["run_id"]
    assert not stack.deliver().failed
    assert checkpoints.latest(stack.services.blob_store, run_id) is None
    stack.services.tensor_store.delete_run(run_id, keep_cursor=False)
    assert dead_letters(deliver_all(stack))
    assert _run(stack, run_id)["status"] == "FAILED"
    resumed = stack.launch({"action": "resume", "run_id": run_id})
    assert (resumed["source"], resumed["resumed_from_seq"]) == ("seeded start", 0)
    assert not dead_letters(deliver_all(stack))
    assert _run(stack, run_id)["status"] == "SUCCEEDED"
    assert _same(final_params(stack, run_id), reference)
    assert mailbox(run_id).count("FAILED") == 1


# -- defect 2: the cache lost mid-invocation --------------------------------------------------------
def test_a_cache_lost_mid_invocation_fails_the_run_once_with_its_reason(stack, reference, tmp_path, mailbox) -> None:
    """A replaced cache node (same address, empty memory) while an invocation computes: its commit
    finds no chain position. That is the run's failure, not a race lost to another copy: FAILED
    with the reason, one FAILED message, all in that delivery; then it resumes from its checkpoint,
    in a cold environment, and ends as the undisturbed run."""
    stack.drop_all()
    stack.failure_records()
    run_id = stack.launch(PAYLOAD)["run_id"]
    while checkpoints.latest(stack.services.blob_store, run_id) is None:
        assert not stack.deliver().failed
    go = tmp_path / "go"
    stack.faults(tmp_path, [{"target": "tensor_store.commit", "pause_until": str(go)}])
    try:
        thread, ended = _deliver_in_background(stack, stack.held()[0]["request_id"])
        wait_for(lambda: read_lines(tmp_path / "paused"), what="a copy paused at its commit")
        stack.cloud.replace_node(stack.env["REPLICATION_GROUP_ID"])  # the node replaced: empty memory
        go.touch()
        thread.join(timeout=120)
    finally:
        stack.calm()
    (delivery,) = ended
    assert delivery.failed, "the copy took the lost cache for a lost race"
    run = _run(stack, run_id)
    assert run["status"] == "FAILED" and run["failure_reason"].startswith("cache lost"), run
    assert not stack.held()
    assert mailbox(run_id) == ["FAILED"]
    (record,) = wait_for(stack.failure_records, what="the on-failure record")
    assert record["requestPayload"]["run_id"] == run_id
    stack.cold()
    assert lifecycle.resume(stack.services, run_id)["source"].startswith("checkpoint")
    assert not dead_letters(deliver_all(stack))
    assert _same(final_params(stack, run_id), reference)
    assert mailbox(run_id) == ["FAILED", "SUCCEEDED"]
    REPORT.record(faults=1, identical=True)


class _Unreachable:
    """The cache while its node is being replaced: nothing answers, even after the client's retries."""

    def __getattr__(self, attr: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise redis.ConnectionError("Error 111 connecting to the cache. Connection refused.")

        return refused


def _failed_while_the_node_is_down(stack: ChainStack) -> tuple[str, dict[str, Any]]:
    """A run whose second step's copy met the cache node being replaced: FAILED by it. The run id
    and that step's event (its next delivery dropped: the test sends its copies itself)."""
    stack.drop_all()
    run_id = stack.launch(PAYLOAD)["run_id"]
    assert not stack.deliver().failed
    payload = stack.held()[0]["payload"]
    stack.drop_all()
    down = dataclasses.replace(stack.services, tensor_store=_Unreachable())
    with pytest.raises(trainer_handler.StepFailed, match="ConnectionError"):
        trainer_handler.run(payload, None, down)
    return run_id, payload


def test_a_cache_unavailable_past_its_retries_fails_the_run_once_with_its_reason(stack, reference, mailbox) -> None:
    """A step's copy meets the cache node still being replaced: FAILED 'cache unavailable', one
    FAILED message. The copy of another step (the successor its completion had sent) meets the
    node back but empty: the run is FAILED by the first step already, so it says nothing more.
    The run then resumes and ends as the undisturbed one."""
    run_id, payload = _failed_while_the_node_is_down(stack)
    run = _run(stack, run_id)
    assert run["status"] == "FAILED" and run["failure_reason"].startswith("cache unavailable"), run
    stack.services.tensor_store.delete_run(run_id, keep_cursor=False)  # the node back, empty
    successor = next_event(RunConfig.from_json(run["config"]).plan, parse_event(payload)).to_dict()
    with pytest.raises(trainer_handler.StepFailed, match="no state in the cache"):
        trainer_handler.run(successor, None, stack.services)
    assert _run(stack, run_id)["failure_reason"] == run["failure_reason"]
    assert mailbox(run_id) == ["FAILED"]
    assert stack.launch({"action": "resume", "run_id": run_id})["status"] == "RUNNING"
    assert not dead_letters(deliver_all(stack))
    assert _same(final_params(stack, run_id), reference)
    assert mailbox(run_id) == ["FAILED", "SUCCEEDED"]


class _UnreachableUntil:
    """The cache as one copy meets it: on its first call, whatever `meanwhile` does happens first
    (the rest of the world moving on), then nothing answers."""

    def __init__(self, meanwhile: Callable[[], None]) -> None:
        self._meanwhile, self.fired = meanwhile, False

    def __getattr__(self, attr: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            if not self.fired:
                self.fired = True
                self._meanwhile()
            raise redis.ConnectionError("Error 111 connecting to the cache. Connection refused.")

        return refused


def test_a_copy_from_before_a_resume_failing_after_it_leaves_the_resumed_run_alone(stack, reference, mailbox) -> None:
    """A copy of the failed step started before the run was resumed (a duplicate, or Lambda's retry,
    held up while the node was down) and fails after the resume has handed on: the failure is the
    replaced chain's, not the resumed run's. The resumed run stays RUNNING, no second FAILED
    message goes out, and it ends as the undisturbed run (the campaign's 'two FAILED messages
    for one failure', seed 99)."""
    run_id, payload = _failed_while_the_node_is_down(stack)
    assert mailbox(run_id) == ["FAILED"]
    stack.services.tensor_store.delete_run(run_id, keep_cursor=False)  # the node back, empty

    def resumed_meanwhile() -> None:
        assert stack.launch({"action": "resume", "run_id": run_id})["status"] == "RUNNING"
        assert "handoff" not in _run(stack, run_id)

    late = dataclasses.replace(stack.services, tensor_store=_UnreachableUntil(resumed_meanwhile))
    with pytest.raises(trainer_handler.StepFailed, match="ConnectionError"):
        trainer_handler.run(payload, None, late)
    assert late.tensor_store.fired
    run = _run(stack, run_id)
    assert run["status"] == "RUNNING" and "failure_reason" not in run, run
    assert mailbox(run_id) == ["FAILED"]
    assert not dead_letters(deliver_all(stack))
    assert _same(final_params(stack, run_id), reference)
    assert mailbox(run_id) == ["FAILED", "SUCCEEDED"]


# -- the stall threshold ----------------------------------------------------------------------------
def test_the_stall_threshold_is_the_users_to_set_on_a_resume(stack, reference) -> None:
    stack.drop_all()
    run_id = stack.launch(PAYLOAD)["run_id"]
    deliver_all(stack, limit=3)
    assert stack.drop_all() == 1  # the hand-off was lost
    with pytest.raises(LaunchRefused, match="only FAILED or STALLED"):
        stack.launch({"action": "resume", "run_id": run_id})
    with pytest.raises(LaunchRefused, match="stall_after_s: must be a number"):
        stack.launch({"action": "resume", "run_id": run_id, "stall_after_s": "soon"})
    assert stack.launch({"action": "resume", "run_id": run_id, "stall_after_s": 0})["source"] == "cache"
    assert not dead_letters(deliver_all(stack))
    assert _same(final_params(stack, run_id), reference)


# -- checkpoints are checked before a resume loads one ---------------------------------------------
def test_a_checkpoint_whose_bytes_changed_is_refused_and_nothing_changes(stack) -> None:
    run_id = _lose_the_cache_after_a_checkpoint(stack)
    run = _run(stack, run_id)
    key = checkpoints.latest_key(stack.services.blob_store, run_id)
    assert run[CHECKPOINTS][key.rsplit("/", 1)[1][:-4]] == checkpoints.digest(stack.services.blob_store.get(key))
    original = stack.services.blob_store.get(key)
    tampered = checkpoints.latest(stack.services.blob_store, run_id)
    seq, epoch, tensors = tampered
    tensors["W1"] = tensors["W1"] + 1.0
    stack.services.blob_store.put(key, checkpoints.dumps(epoch, seq, tensors))
    with pytest.raises(LaunchRefused, match="does not match the sha256 recorded"):
        stack.launch({"action": "resume", "run_id": run_id})
    after = _run(stack, run_id)
    assert after["status"] == "FAILED" and after.get("resumes") == run.get("resumes")
    assert not stack.held()
    assert not [k for k in stack.services.tensor_store.run_keys(run_id) if b":data:" in k or b":t:" in k]
    stack.services.blob_store.put(key, original)
    assert stack.launch({"action": "resume", "run_id": run_id})["source"].startswith("checkpoint")
    assert not dead_letters(deliver_all(stack))
    assert _run(stack, run_id)["status"] == "SUCCEEDED"
