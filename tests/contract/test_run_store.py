"""The run store's contract, against the fake and DynamoDB (moto): the run's record, its status
moves as conditional writes along statemachine.RUN_TRANSITIONS, its history, and message claims."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from trainer.errors import RunNotFound
from trainer.statemachine import RUN_TRANSITIONS
from trainer.stores.run_store import CHECKPOINTS, FAILURE_REASON, HANDOFF, WORKER_STEPS, Handoff, checkpoint_name
from trainer.vocabulary import Claim, Notice, RunStatus

STORED = (RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.STOPPED)
MOVES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.STOPPED)


def new_run(store, run_id: str, handed_off: bool = True) -> dict:
    assert store.create_run(run_id, {"epochs": 2}, '{"config": 1}', 11)
    if handed_off:
        assert store.handed_off(run_id)
    return store.get_run(run_id)


def move(store, run_id: str, to: RunStatus):
    """The store's one write for a move to `to`: what it answers (None: refused)."""
    if to == RunStatus.SUCCEEDED:
        return store.mark_succeeded(run_id, {"final_cost": 0.25, "test_accuracy": 0.5})
    if to == RunStatus.FAILED:
        return store.mark_failed(run_id, "boom", "forward#3", "ValueError")
    if to == RunStatus.CANCELLED:
        return store.mark_cancelled(run_id)
    return store.mark_stopped(run_id, {"validation_accuracy": 0.75, "epochs_run": 1})


def run_in(store, run_id: str, status: RunStatus) -> None:
    new_run(store, run_id)
    if status != RunStatus.RUNNING:
        assert move(store, run_id, status) is not None
    assert store.get_run(run_id)["status"] == status


def test_a_run_id_is_claimed_once(runs, ids) -> None:
    store, run_id = runs.store, ids()
    assert not store.exists(run_id)
    with pytest.raises(RunNotFound, match=run_id):
        store.get_run(run_id)
    run = new_run(store, run_id, handed_off=False)
    assert not store.create_run(run_id, {"epochs": 9}, "{}", 99), "the id is taken"
    assert store.exists(run_id)
    assert (run["status"], run["last_seq"], run["total_steps"], run[HANDOFF]) == ("RUNNING", -1, 11, "launch")
    assert run["request"] == '{"epochs": 2}' and run["config"] == '{"config": 1}' and run[CHECKPOINTS] == {}
    assert isinstance(run["created_at"], float) and run["created_at"] == run["last_step_at"]


@pytest.mark.parametrize("start", STORED)
@pytest.mark.parametrize("to", MOVES)
def test_a_status_moves_only_along_the_transition_table(runs, ids, start, to) -> None:
    store, run_id = runs.store, ids()
    run_in(store, run_id, start)
    answer = move(store, run_id, to)
    allowed = start in RUN_TRANSITIONS[to]
    after = store.get_run(run_id)
    if allowed:
        assert answer is not None and answer["status"] == to == after["status"]
    elif to == RunStatus.FAILED and start == RunStatus.FAILED:
        assert answer is not None and answer["status"] == RunStatus.FAILED, "a failed run is answered as it stands"
    else:
        assert answer is None and after["status"] == start, f"{start} -> {to} must be refused"


def test_a_failed_run_keeps_its_first_reason(runs, ids) -> None:
    store, run_id = runs.store, ids()
    new_run(store, run_id)
    first = store.mark_failed(run_id, "x" * 3000, "forward#3", "ValueError")
    assert len(first[FAILURE_REASON]) == 2000 and first["failed_step"] == "forward#3"
    again = store.mark_failed(run_id, "later", "backward#4", "KeyError")
    assert again[FAILURE_REASON] == "x" * 2000 and again["failed_step"] == "forward#3"
    assert store.mark_failed(ids(), "no run", "start#0", "X") is None


def test_the_finish_writes_its_metrics_with_the_move(runs, ids) -> None:
    store, run_id = runs.store, ids()
    new_run(store, run_id)
    done = store.mark_succeeded(run_id, {"final_cost": 0.125, "epochs": 2, "model_uri": "s3://b/k"})
    assert (done["final_cost"], done["epochs"], done["model_uri"]) == (0.125, 2, "s3://b/k")
    again = store.mark_succeeded(run_id, {"final_cost": 0.125, "epochs": 2, "model_uri": "s3://b/k"})
    assert again is not None and again["status"] == RunStatus.SUCCEEDED, "a retry of the finish is its own move"


def test_while_a_hand_off_is_pending_only_its_owner_fails_the_run(runs, ids) -> None:
    store, run_id = runs.store, ids()
    new_run(store, run_id, handed_off=False)
    assert store.mark_failed(run_id, "a late step", "forward#1", "CacheLost") is None
    assert store.mark_failed(run_id, "a late step", "forward#1", "CacheLost", Handoff.RESUME) is None
    assert store.get_run(run_id)["status"] == RunStatus.RUNNING
    failed = store.mark_failed(run_id, "no trainer", "launch", "RuntimeError", Handoff.LAUNCH)
    assert failed["status"] == RunStatus.FAILED


def test_a_chains_heartbeat_ends_a_hand_off_its_sender_never_noted(runs, ids) -> None:
    """The LaunchLambda died after sending the first event, before noting the hand-off done: the
    chain's first heartbeat ends the hand-off, so that the chain's failures are the run's again.
    The resume's own heartbeat (it sets the restored position) does not."""
    store, run_id = runs.store, ids()
    new_run(store, run_id, handed_off=False)
    store.record_restored_position(run_id, 0)
    assert store.get_run(run_id)[HANDOFF] == Handoff.LAUNCH
    store.record_progress(run_id, 2)
    assert HANDOFF not in store.get_run(run_id) and store.get_run(run_id)["last_seq"] == 2
    assert store.mark_failed(run_id, "boom", "forward#3", "ValueError")["status"] == RunStatus.FAILED


def test_only_a_copy_of_the_runs_generation_fails_it(runs, ids) -> None:
    store, run_id = runs.store, ids()
    new_run(store, run_id)
    assert store.generation(run_id) == 0 and store.generation(ids()) is None
    assert store.mark_failed(run_id, "cache lost", "forward#3", "CacheLost", generation=0)["status"] == "FAILED"
    store.resumed(run_id, stalled_before=0.0)
    assert store.handed_off(run_id) and store.generation(run_id) == 1
    assert store.mark_failed(run_id, "late", "forward#3", "ConnectionError", generation=0) is None
    assert store.get_run(run_id)["status"] == RunStatus.RUNNING, "a copy from before the resume"
    failed = store.mark_failed(run_id, "boom", "backward#5", "ValueError", generation=1)
    assert failed["status"] == RunStatus.FAILED and failed["failed_step"] == "backward#5"
    assert store.mark_failed(run_id, "late", "forward#3", "ConnectionError", generation=0) is None
    assert store.mark_failed(run_id, "again", "backward#5", "ValueError", generation=1)["failed_step"] == "backward#5"


def test_a_hand_off_is_done_only_for_a_running_run(runs, ids) -> None:
    store, run_id, cancelled = runs.store, ids(), ids()
    new_run(store, run_id, handed_off=False)
    assert store.handed_off(run_id) and HANDOFF not in store.get_run(run_id)
    assert store.handed_off(run_id), "a repeat finds nothing pending and says so"
    new_run(store, cancelled, handed_off=False)
    store.mark_cancelled(cancelled)
    assert not store.handed_off(cancelled) and not store.handed_off(ids())


def test_progress_moves_forward_and_puts_a_failed_run_back(runs, ids) -> None:
    store, run_id = runs.store, ids()
    new_run(store, run_id)
    store.record_progress(run_id, 5)
    store.record_progress(run_id, 3)  # a late copy's heartbeat
    assert store.get_run(run_id)["last_seq"] == 5
    store.mark_failed(run_id, "boom", "forward#6", "ValueError")
    store.record_progress(run_id, 7)  # Lambda's retry got through
    assert (store.get_run(run_id)["status"], store.get_run(run_id)["last_seq"]) == (RunStatus.RUNNING, 7)
    store.mark_cancelled(run_id)
    store.record_progress(run_id, 9)
    assert store.get_run(run_id)["status"] == RunStatus.CANCELLED and store.get_run(run_id)["last_seq"] == 7
    store.record_progress(ids(), 1)  # an unknown run: nothing, no error


def test_a_resume_moves_a_failed_or_stalled_run_once(runs, ids) -> None:
    store, failed, running = runs.store, ids(), ids()
    new_run(store, failed)
    store.mark_failed(failed, "boom", "forward#3", "ValueError")
    resumed = store.resumed(failed, stalled_before=0.0)
    assert resumed["status"] == RunStatus.RUNNING and resumed["resumes"] == 1 and resumed[HANDOFF] == "resume"
    assert FAILURE_REASON not in resumed and "failed_step" not in resumed
    assert store.resumed(failed, stalled_before=0.0) is None, "a second resume finds it RUNNING, not stalled"
    new_run(store, running)
    last_step = store.get_run(running)["last_step_at"]
    assert store.resumed(running, stalled_before=last_step) is None, "a heartbeat that recent is no stall"
    assert store.resumed(running, stalled_before=last_step + 1)["resumes"] == 1
    store.mark_cancelled(running)
    assert store.resumed(running, stalled_before=last_step + 100) is None
    assert store.resumed(ids(), stalled_before=0.0) is None


def test_data_parallel_workers_record_their_steps_in_their_generation(runs, ids) -> None:
    store, run_id = runs.store, ids()
    new_run(store, run_id, handed_off=False)  # the launch died before noting its hand-off done
    before = store.get_run(run_id)["last_step_at"]
    store.record_worker_step(run_id, 2, 7, generation=0)  # the first heartbeat makes the map
    assert HANDOFF not in store.get_run(run_id), "the workers run: the hand-off went out"
    store.record_worker_step(run_id, 0, 9, generation=0)
    store.record_worker_step(run_id, 2, 8, generation=0)
    run = store.get_run(run_id)
    assert {k: int(v) for k, v in run[WORKER_STEPS].items()} == {"0": 9, "2": 8}
    assert run["last_step_at"] >= before, "a worker's step is the run's heartbeat"
    store.mark_failed(run_id, "boom", "dp_worker#1", "ValueError", generation=0)
    store.record_worker_step(run_id, 1, 10, generation=0)  # a worker stopping after the failure
    assert {k: int(v) for k, v in store.get_run(run_id)[WORKER_STEPS].items()} == {"0": 9, "2": 8}
    store.resumed(run_id, stalled_before=0.0)
    assert WORKER_STEPS not in store.get_run(run_id), "a resume forgets the steps of the generation before"
    store.record_worker_step(run_id, 1, 3, generation=0)  # a worker of the generation before
    assert WORKER_STEPS not in store.get_run(run_id)
    store.record_worker_step(run_id, 1, 3, generation=1)
    assert {k: int(v) for k, v in store.get_run(run_id)[WORKER_STEPS].items()} == {"1": 3}
    store.record_worker_step(ids(), 0, 1, generation=0)  # an unknown run: nothing, no error


def test_checkpoint_digests_are_kept_by_epoch(runs, ids) -> None:
    store, run_id = runs.store, ids()
    new_run(store, run_id)
    store.record_checkpoint(run_id, 3, "aa")
    store.record_checkpoint(run_id, 7, "bb")
    store.record_checkpoint(run_id, 3, "cc")
    assert store.get_run(run_id)[CHECKPOINTS] == {checkpoint_name(3): "cc", checkpoint_name(7): "bb"}
    with pytest.raises(ClientError):
        store.record_checkpoint(ids(), 1, "dd")


def test_epoch_items_are_idempotent_and_in_order(runs, ids) -> None:
    store, run_id = runs.store, ids()
    new_run(store, run_id)
    assert store.epochs(run_id) == [] and store.last_epoch(run_id) is None
    items = [{"epoch": e, "cost": 1.0 / (e + 1), "duration_s": 0.5} for e in (2, 0, 1)]
    store.put_epochs(run_id, items)
    store.put_epochs(run_id, items[:1])
    found = store.epochs(run_id)
    assert [e["epoch"] for e in found] == [0, 1, 2] and found[1]["cost"] == 0.5
    assert store.last_epoch(run_id)["epoch"] == 2
    assert [e["epoch"] for e in store.epochs_from(run_id, 1)] == [1, 2] and store.epochs_from(run_id, 3) == []


def test_a_message_claim_is_a_lease_and_sent_is_final(runs, ids) -> None:
    store, run_id, kind = runs.store, ids(), Notice.PROGRESS
    assert store.claim_notice(run_id, kind, "epoch-1", "a", 30) is Claim.ACQUIRED
    assert store.claim_notice(run_id, kind, "epoch-1", "b", 30) is Claim.BUSY
    assert store.claim_notice(run_id, kind, "epoch-2", "b", 30) is Claim.ACQUIRED, "each key its own"
    assert store.claim_notice(run_id, Notice.FAILED, "epoch-1", "b", 30) is Claim.ACQUIRED, "each kind its own"
    runs.advance(31)
    assert store.claim_notice(run_id, kind, "epoch-1", "b", 30) is Claim.ACQUIRED, "a lease that ended is taken over"
    assert not store.fence_notice(run_id, kind, "epoch-1", "a", 1), "the old holder's fence fails"
    assert store.fence_notice(run_id, kind, "epoch-1", "b", 1)
    assert not store.fence_notice(run_id, kind, "epoch-1", "b", 31), "not this much of the lease is left"
    store.notice_sent(run_id, kind, "epoch-1")
    runs.advance(100)
    assert store.claim_notice(run_id, kind, "epoch-1", "c", 30) is Claim.DONE
    assert not store.fence_notice(run_id, kind, "epoch-1", "b", 1), "nothing to fence once sent"


def test_a_released_message_claim_is_free_at_once_but_only_by_its_holder(runs, ids) -> None:
    store, run_id, kind = runs.store, ids(), Notice.SUCCEEDED
    assert store.claim_notice(run_id, kind, "run", "a", 30) is Claim.ACQUIRED
    store.release_notice(run_id, kind, "run", "b")
    assert store.claim_notice(run_id, kind, "run", "b", 30) is Claim.BUSY
    store.release_notice(run_id, kind, "run", "a")
    assert store.claim_notice(run_id, kind, "run", "b", 30) is Claim.ACQUIRED
    store.notice_sent(run_id, kind, "run")
    store.release_notice(run_id, kind, "run", "b")  # sent is final, whoever releases
    assert store.claim_notice(run_id, kind, "run", "c", 30) is Claim.DONE
