"""The completion of a committed position (trainer/effects.py, through the trainer's entry point),
on fakes: its effects are made once whoever completes it, a crashed completion is finished by a
later copy, and a finish marks the run SUCCEEDED once and says so once."""

from __future__ import annotations

import hashlib
import secrets

import pytest

from tests.fakes import fake_services
from tests.fakes.chain import Deadline, deliver, drain, launch, once_before, step_to
from trainer import lifecycle
from trainer.handlers.trainer import StepFailed
from trainer.stores.run_store import CHECKPOINTS, checkpoint_name
from trainer.vocabulary import Claim, Notice, Outcome, RunStatus

FINISH = 12  # 2 epochs of 1 batch through 2 layers: 2 x (1 + 5) steps, then the finish


@pytest.fixture
def svc():
    return fake_services()


def test_a_finish_marks_the_run_succeeded_once_and_publishes_once(svc) -> None:
    run_id = launch(svc)
    finish = step_to(svc, run_id, FINISH)
    assert deliver(svc, finish)["status"] == Outcome.SUCCEEDED
    for _ in range(2):  # duplicates, and a retry after the run ended
        assert deliver(svc, finish)["status"] == Outcome.DUPLICATE
    run = svc.run_store.get_run(run_id)
    assert run["status"] == RunStatus.SUCCEEDED and run["model_uri"] == f"s3://fake-bucket/models/{run_id}/model.npz"
    assert svc.blob_store.keys(f"models/{run_id}/") == [f"models/{run_id}/model.npz"]
    [message] = svc.notifier.of(Notice.SUCCEEDED, run_id)
    assert message["final_cost"] == run["final_cost"] and message["model_uri"] == run["model_uri"]
    assert svc.invoker.events == [], "nothing after the finish"
    assert svc.tensor_store.dump_run(run_id)[2:] == ({}, {}), "the cache state is gone once the finish is done"
    assert svc.tensor_store.cursor(run_id) == FINISH, "its bookkeeping stays for late duplicates"


def test_a_finish_whose_message_failed_is_completed_by_the_retry_once(svc) -> None:
    run_id = launch(svc)
    finish = step_to(svc, run_id, FINISH)
    svc.notifier.fail = ConnectionError("SNS unreachable")
    with pytest.raises(StepFailed, match="SNS unreachable"):
        deliver(svc, finish)
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.SUCCEEDED, "the move came first and stands"
    assert svc.notifier.sent == [] and not svc.tensor_store.done(run_id, FINISH)
    retry = deliver(svc, finish)
    assert retry["status"] == Outcome.DUPLICATE and retry["completed"]
    assert len(svc.notifier.of(Notice.SUCCEEDED, run_id)) == 1 and svc.tensor_store.done(run_id, FINISH)
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.SUCCEEDED


def test_a_cancel_that_lands_before_the_finishs_move_leaves_no_model_and_no_success(svc) -> None:
    run_id = launch(svc)
    finish = step_to(svc, run_id, FINISH)
    once_before(svc.run_store, "mark_succeeded", lambda: lifecycle.cancel(svc, run_id))
    deliver(svc, finish)
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.CANCELLED
    assert svc.blob_store.keys("models/") == [] and svc.notifier.of(Notice.SUCCEEDED) == []
    assert len(svc.notifier.of(Notice.CANCELLED, run_id)) == 1


def test_a_run_is_succeeded_only_once_its_model_is_in_place(svc) -> None:
    """A user (or `lnn train`) who reads SUCCEEDED fetches the model at once: it must be there."""
    run_id = launch(svc)
    finish = step_to(svc, run_id, FINISH)
    seen = once_before(svc.run_store, "mark_succeeded", lambda: svc.blob_store.keys(f"models/{run_id}/"))
    deliver(svc, finish)
    assert seen == [[f"models/{run_id}/model.npz"]]
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.SUCCEEDED


def test_a_finish_that_outlasted_its_lease_is_done_for_the_copies_after_it(svc) -> None:
    """A completion slower than its claim's lease (nobody took the claim meanwhile) still marks it
    done: a later copy finds the run ended, not a completion to make again without the tensors."""
    run_id = launch(svc)
    finish = step_to(svc, run_id, FINISH)
    lease_s = svc.settings.handoff_claim_ttl_s
    once_before(svc.run_store, "mark_succeeded", lambda: svc.tensor_store.clock.advance(lease_s + 1))
    assert deliver(svc, finish)["status"] == Outcome.SUCCEEDED
    assert svc.tensor_store.done(run_id, FINISH)
    assert deliver(svc, finish)["status"] == Outcome.DUPLICATE
    assert len(svc.notifier.of(Notice.SUCCEEDED, run_id)) == 1


def test_a_completion_that_crashed_before_its_hand_off_is_finished_by_the_retry(svc) -> None:
    run_id = launch(svc)
    event = step_to(svc, run_id, 4)
    svc.invoker.fail = ConnectionError("Lambda API unreachable")
    with pytest.raises(StepFailed, match="Lambda API unreachable"):
        deliver(svc, event)
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.FAILED, "the committer's failure is the run's"
    assert svc.invoker.events == [] and svc.tensor_store.cursor(run_id) == 4
    assert svc.tensor_store.claim(run_id, 4, "anyone", 30) is Claim.ACQUIRED, "the crash released its claim"
    svc.tensor_store.release(run_id, 4, "anyone")
    retry = deliver(svc, event)
    assert retry["status"] == Outcome.DUPLICATE and retry["completed"]
    [successor] = svc.invoker.take()
    assert successor["seq"] == 5, "the hand-off, once"
    # The crashed copy had recorded this position's heartbeat before its hand-off failed, so the
    # run is RUNNING again with the next position's heartbeat, not this one's.
    deliver(svc, successor)
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.RUNNING, "the chain got through: running again"


def test_a_completion_held_by_another_copy_is_left_to_lambdas_retry(svc) -> None:
    run_id = launch(svc)
    event = step_to(svc, run_id, 4)
    # Another copy claims the completion between this copy's commit and its own claim.
    other = once_before(svc.tensor_store, "claim", lambda: svc.tensor_store.claim(run_id, 4, "other-copy", 30))
    with pytest.raises(StepFailed, match="held by another copy"):
        deliver(svc, event, Deadline(left_ms=500))
    assert other == [Claim.ACQUIRED]
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.RUNNING, "a busy claim is not the run's failure"
    assert svc.invoker.events == [] and svc.tensor_store.cursor(run_id) == 4
    svc.tensor_store.clock.advance(31)  # the other copy died; its lease ends
    assert deliver(svc, event)["completed"]
    assert [e["seq"] for e in svc.invoker.take()] == [5]


def test_progress_is_announced_once_per_epoch_however_often_it_is_completed(svc) -> None:
    run_id = launch(svc, epochs=3, notify_every=1)
    drain(svc, copies=3)
    assert [m["epoch"] for m in svc.notifier.of(Notice.PROGRESS, run_id)] == [0, 1, 2]
    assert [e["epoch"] for e in svc.run_store.epochs(run_id)] == [0, 1, 2]
    assert len(svc.notifier.of(Notice.SUCCEEDED, run_id)) == 1


def test_a_checkpoint_is_written_with_its_digest(svc) -> None:
    run_id = launch(svc, epochs=2, checkpoint_every=1, optimizer="momentum")
    drain(svc)
    keys = svc.blob_store.keys(f"checkpoints/{run_id}/")
    assert keys == [f"checkpoints/{run_id}/epoch-{e:06d}.npz" for e in (0, 1)]
    recorded = svc.run_store.get_run(run_id)[CHECKPOINTS]
    for epoch, key in enumerate(keys):
        assert recorded[checkpoint_name(epoch)] == hashlib.sha256(svc.blob_store.get(key)).hexdigest()


def test_a_failure_is_recorded_once_with_one_message_per_chain(svc) -> None:
    run_id = launch(svc)
    event = step_to(svc, run_id, 3)
    original = svc.tensor_store.commit
    svc.tensor_store.commit = lambda *args: (_ for _ in ()).throw(TimeoutError("cache timed out"))
    for _ in range(3):  # the event and Lambda's two retries
        with pytest.raises(StepFailed, match="cache timed out"):
            deliver(svc, event)
    run = svc.run_store.get_run(run_id)
    assert run["status"] == RunStatus.FAILED and run["failed_step"] == "forward#3"
    assert len(svc.notifier.of(Notice.FAILED, run_id)) == 1
    svc.tensor_store.commit = original
    assert deliver(svc, event)["status"] == Outcome.APPLIED, "a later retry that gets through"
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.RUNNING
    later = step_to(svc, run_id, 5)
    svc.tensor_store.commit = lambda *args: (_ for _ in ()).throw(ConnectionError("cache refused"))
    with pytest.raises(StepFailed, match="cache refused"):
        deliver(svc, later)
    run = svc.run_store.get_run(run_id)
    assert run["status"] == RunStatus.FAILED and run["failed_step"] == "backward#5", "the newer failure stands"
    assert len(svc.notifier.of(Notice.FAILED, run_id)) == 1, "one message for the chain's failures"


def test_a_chain_whose_launch_died_before_noting_its_hand_off_can_still_fail_the_run(svc) -> None:
    """LaunchLambda sent the first event and died before it noted the hand-off done. The chain's
    heartbeats end the hand-off, so a later failure of the chain is the run's, said once (before,
    the run stayed RUNNING, silent, until it was STALLED)."""
    run_id = "u-" + secrets.token_hex(6)
    noted = svc.run_store.handed_off
    svc.run_store.handed_off = lambda _: (_ for _ in ()).throw(SystemExit("LaunchLambda killed"))
    with pytest.raises(SystemExit):
        launch(svc, run_id=run_id)
    svc.run_store.handed_off = noted
    event = step_to(svc, run_id, 3)
    svc.tensor_store.commit = lambda *args: (_ for _ in ()).throw(TimeoutError("cache timed out"))
    with pytest.raises(StepFailed, match="cache timed out"):
        deliver(svc, event)
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.FAILED
    assert len(svc.notifier.of(Notice.FAILED, run_id)) == 1
