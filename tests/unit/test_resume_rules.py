"""Resume and cancel of a run (trainer/lifecycle.py, through LaunchLambda's entry point), on fakes:
a failed run goes on from its last applied step, a run whose cache was lost from its newest
checkpoint, and either ends as its calm twin does; a run that cannot resume is left as it is."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import redis

from tests.fakes import fake_services
from tests.fakes.chain import ask, deliver, drain, launch, once_before, step_to
from trainer import engine
from trainer.errors import EventError, RequestError
from trainer.handlers import worker as worker_handler
from trainer.handlers.trainer import StepFailed
from trainer.handlers.worker import WorkerFailed
from trainer.parallel import worker
from trainer.vocabulary import Notice, RunStatus


@pytest.fixture
def svc():
    return fake_services()


def calm_twin(svc, **request) -> dict:
    run_id = launch(svc, **request)
    drain(svc)
    return svc.run_store.get_run(run_id)


def same_result(run: dict, twin: dict) -> bool:
    keys = ("final_cost", "train_accuracy", "test_accuracy")
    return run["status"] == twin["status"] == RunStatus.SUCCEEDED and all(run[k] == twin[k] for k in keys)


def test_a_failed_run_resumes_from_its_last_step_and_ends_as_its_calm_twin(svc) -> None:
    twin = calm_twin(svc, seed=5, epochs=3)
    run_id = launch(svc, seed=5, epochs=3)
    event = step_to(svc, run_id, 8)
    original = svc.tensor_store.commit
    svc.tensor_store.commit = lambda *args: (_ for _ in ()).throw(TimeoutError("cache timed out"))
    with pytest.raises(StepFailed):
        deliver(svc, event)
    svc.tensor_store.commit = original
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.FAILED
    answer = ask(svc, {"action": "resume", "run_id": run_id})
    assert (answer["status"], answer["resumed_from_seq"], answer["source"]) == (RunStatus.RUNNING, 8, "cache")
    drain(svc)
    run = svc.run_store.get_run(run_id)
    assert same_result(run, twin) and run["resumes"] == 1
    assert len(svc.notifier.of(Notice.FAILED, run_id)) == 1 and len(svc.notifier.of(Notice.SUCCEEDED, run_id)) == 1


def test_a_run_whose_cache_was_lost_resumes_from_its_newest_checkpoint(svc) -> None:
    twin = calm_twin(svc, seed=6, epochs=3, checkpoint_every=1)
    run_id = launch(svc, seed=6, epochs=3, checkpoint_every=1)
    event = step_to(svc, run_id, 15)  # inside epoch 2: epochs 0 and 1 are checkpointed
    svc.tensor_store.flush()
    with pytest.raises(StepFailed, match="CacheLost"):
        deliver(svc, event)
    answer = ask(svc, {"action": "resume", "run_id": run_id})
    assert answer["source"] == "checkpoint (epoch 1)" and answer["resumed_from_seq"] == 12
    drain(svc)
    assert same_result(svc.run_store.get_run(run_id), twin)


def test_a_copy_whose_cache_was_replaced_after_its_commit_leaves_no_mark_for_the_resumed_chain(svc) -> None:
    """The node is replaced between a copy's commit and its completion (the copy was held up while
    the node was down): the copy's claim, or its 'sent', must not land in the empty node, where the
    resumed chain, reaching that position again, would find it done and stop there for good."""
    twin = calm_twin(svc, seed=7, epochs=3, checkpoint_every=1)
    run_id = launch(svc, seed=7, epochs=3, checkpoint_every=1)
    event = step_to(svc, run_id, 15)
    once_before(svc.tensor_store, "claim", svc.tensor_store.flush)
    with pytest.raises(StepFailed, match="CacheLost"):
        deliver(svc, event)
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.FAILED
    assert svc.invoker.take() == [], "nothing handed on from a position the cache lost"
    answer = ask(svc, {"action": "resume", "run_id": run_id})
    assert answer["source"] == "checkpoint (epoch 1)"
    drain(svc)
    assert same_result(svc.run_store.get_run(run_id), twin)
    assert len(svc.notifier.of(Notice.FAILED, run_id)) == 1 and len(svc.notifier.of(Notice.SUCCEEDED, run_id)) == 1


def test_a_running_run_is_not_resumed_and_nothing_changes(svc) -> None:
    run_id = launch(svc)
    step_to(svc, run_id, 3)
    before = svc.run_store.get_run(run_id)
    with pytest.raises(RequestError, match="only FAILED or STALLED runs can resume"):
        ask(svc, {"action": "resume", "run_id": run_id})
    assert svc.run_store.get_run(run_id) == before and svc.invoker.events == []


def test_a_run_that_stopped_beating_resumes_as_stalled(svc) -> None:
    run_id = launch(svc)
    event = step_to(svc, run_id, 3)
    # Its chain died with the event in flight; a user counts it stalled after no time at all.
    answer = ask(svc, {"action": "resume", "run_id": run_id, "stall_after_s": 0})
    assert answer["resumed_from_seq"] == 3
    assert [e["seq"] for e in svc.invoker.take()] == [3]
    assert deliver(svc, event)["status"] == "RUNNING", "the resumed chain's event is the one that was lost"


def test_a_cancelled_run_cannot_resume_and_a_second_cancel_is_refused(svc) -> None:
    run_id = launch(svc)
    step_to(svc, run_id, 2)
    assert ask(svc, {"action": "cancel", "run_id": run_id})["status"] == RunStatus.CANCELLED
    with pytest.raises(RequestError, match="is CANCELLED already"):
        ask(svc, {"action": "cancel", "run_id": run_id})
    with pytest.raises(RequestError, match="CANCELLED"):
        ask(svc, {"action": "resume", "run_id": run_id})
    assert len(svc.notifier.of(Notice.CANCELLED, run_id)) == 1
    assert svc.tensor_store.dump_run(run_id)[2:] == ({}, {}), "its cache state is gone"


def test_a_stalled_data_parallel_run_resumes_with_one_event_per_worker_of_its_next_generation(svc) -> None:
    run_id = launch(svc, workers=2, epochs=3)
    assert [e["worker"] for e in svc.invoker.take()] == [0, 1]
    # Its workers died: a user counts it stalled after no time at all.
    answer = ask(svc, {"action": "resume", "run_id": run_id, "stall_after_s": 0})
    assert (answer["status"], answer["source"], answer["resumed_from_seq"]) == (RunStatus.RUNNING, "seeded start", -1)
    events = svc.invoker.take()
    assert [(e["state"], e["worker"], e["gen"], e["resumes"]) for e in events] == [
        ("dp_worker", 0, 0, 1),
        ("dp_worker", 1, 0, 1),
    ]
    assert svc.run_store.get_run(run_id)["resumes"] == 1


def test_a_data_parallel_run_whose_cache_was_lost_gets_its_shards_and_start_back(svc) -> None:
    run_id = launch(svc, workers=2, epochs=3)
    svc.invoker.take()
    svc.tensor_store.flush()
    svc.run_store.mark_failed(run_id, "cache lost: CacheLost", "dp_worker#1", "CacheLost", generation=0)
    answer = ask(svc, {"action": "resume", "run_id": run_id})
    assert answer["source"] == "seeded start" and len(svc.invoker.take()) == 2
    assert svc.tensor_store.has_data(run_id, "dp_x0") and svc.tensor_store.has_data(run_id, "dp_x15")
    assert svc.tensor_store.cursor(run_id) == -1, "the initial parameters back at the launch's position"


def test_a_worker_in_a_cold_environment_fails_the_run_its_cache_lost_and_the_run_resumes(svc) -> None:
    # The campaign's stuck runs: a node replaced under a hand-on, the successor in an environment
    # that never read the run. It found no configuration in the cache and raised until Lambda
    # dropped its event, each worker alike: RUNNING with no worker left.
    run_id = launch(svc, workers=2, epochs=3)
    first, _ = svc.invoker.take()
    svc.tensor_store.flush()
    with pytest.raises(WorkerFailed, match="failed the run: cache lost"):
        deliver(svc, first)
    run = svc.run_store.get_run(run_id)
    assert run["status"] == RunStatus.FAILED and run["failure_reason"].startswith("cache lost:"), run
    assert len(svc.notifier.of(Notice.FAILED, run_id)) == 1
    assert ask(svc, {"action": "resume", "run_id": run_id})["status"] == RunStatus.RUNNING
    assert len(svc.invoker.take()) == 2
    with pytest.raises(EventError, match="'no-such-run' is no run of this deployment"):
        deliver(svc, {**first, "run_id": "no-such-run"})


def test_a_worker_that_cannot_reach_the_cache_fails_the_run_as_a_chain_step_does(svc) -> None:
    # Every worker's hand-on met the node while it was being replaced; Lambda's retries all fell
    # within it, so each event was dropped and the run stayed RUNNING with no worker (the campaign).
    run_id = launch(svc, workers=2, epochs=3)
    first, _ = svc.invoker.take()
    snapshot = svc.tensor_store.snapshot
    svc.tensor_store.snapshot = lambda *args: (_ for _ in ()).throw(redis.ConnectionError("Connection refused"))
    with pytest.raises(WorkerFailed, match="failed the run: cache unavailable"):
        deliver(svc, first)
    svc.tensor_store.snapshot = snapshot
    run = svc.run_store.get_run(run_id)
    assert run["status"] == RunStatus.FAILED, run
    assert run["failure_reason"] == (
        "cache unavailable: ConnectionError: Connection refused; resume the run once the cache answers again"
    )
    assert len(svc.notifier.of(Notice.FAILED, run_id)) == 1
    assert ask(svc, {"action": "resume", "run_id": run_id})["status"] == RunStatus.RUNNING


def silent(svc, method: str) -> list[str]:
    """The tensor store's `method` as a cache that does not answer (past the client's retries)
    meets it; the calls it was asked, in a list."""
    asked: list[str] = []

    def refuse(*args, **kwargs):
        asked.append(method)
        raise redis.ConnectionError("Connection refused")

    setattr(svc.tensor_store, method, refuse)
    return asked


def test_a_worker_whose_first_reads_meet_a_silent_cache_fails_the_run_without_asking_it_again(svc) -> None:
    """The failure's reason is worded from what the triage found, not from a second read of the
    cursor: each read of a silent cache waits out the client's retries."""
    run_id = launch(svc, workers=2, epochs=3)
    first, _ = svc.invoker.take()
    snapshots, cursors = silent(svc, "snapshot"), silent(svc, "cursor")
    with pytest.raises(WorkerFailed, match="failed the run: cache unavailable"):
        deliver(svc, first)
    assert (snapshots, cursors) == (["snapshot"], [])
    assert svc.run_store.get_run(run_id)["failure_reason"].startswith("cache unavailable: ConnectionError")


def test_a_worker_that_ends_early_reads_where_the_run_stands_once(svc) -> None:
    """A step loop that stopped reads the cancel mark and the cursor once: a cursor that does not
    answer fails the run (cache unavailable) at once; one that is gone fails it as lost."""
    run_id = launch(svc, workers=2, epochs=3)
    first, _ = svc.invoker.take()
    invocation = worker_handler.WorkerInvocation(worker_handler.parse(first), None, svc)
    cursor = svc.tensor_store.cursor
    cursors = silent(svc, "cursor")
    with pytest.raises(WorkerFailed, match="failed the run: cache unavailable"):
        invocation.standing(None, redis.TimeoutError("Timeout reading from socket"))
    assert cursors == ["cursor"], "read once, not again to word the failure"
    svc.tensor_store.cursor = cursor
    assert invocation.standing(None) is worker_handler.Standing.ON

    lost_run = launch(svc, workers=2, epochs=3)
    first, _ = svc.invoker.take()
    invocation = worker_handler.WorkerInvocation(worker_handler.parse(first), None, svc)
    svc.tensor_store.flush()
    with pytest.raises(WorkerFailed, match="failed the run: cache lost"):
        invocation.standing(None)
    assert svc.run_store.get_run(lost_run)["failure_reason"].startswith("cache lost: CacheLost")
    assert svc.run_store.get_run(run_id)["status"] == RunStatus.FAILED


def test_a_finish_whose_cache_was_lost_under_it_fails_the_run_rather_than_leave_it_running(svc) -> None:
    # The campaign's other stuck run: the node replaced between the finisher's reads and its
    # commit. The commit found no position and the finisher returned as if another copy had
    # finished; every other worker had already returned, so the run stayed RUNNING.
    run_id = launch(svc, workers=2, epochs=3)
    first, _ = svc.invoker.take()
    invocation = worker_handler.WorkerInvocation(worker_handler.parse(first), None, svc)
    config = invocation.config()
    params = svc.tensor_store.read_at(run_id, -1, engine.weight_names(config))
    reads = svc.tensor_store.get_data

    def read_then_lose(*args, **kwargs):
        got = reads(*args, **kwargs)
        svc.tensor_store.flush()
        return got

    svc.tensor_store.get_data = read_then_lose
    outcome = worker.Result(params=params, costs=[0.5, 0.4, 0.3], steps=3, rejoined_at=-1)
    with pytest.raises(WorkerFailed, match="failed the run: cache lost"):
        invocation.finish(config, outcome, correct=1, store=SimpleNamespace(epoch_ends=dict))  # no validation
    run = svc.run_store.get_run(run_id)
    assert run["status"] == RunStatus.FAILED and run["failure_reason"].startswith("cache lost:"), run


def test_a_data_parallel_run_is_not_resumed_while_running_nor_after_its_finish(svc) -> None:
    run_id = launch(svc, workers=2, epochs=3)
    svc.invoker.take()
    with pytest.raises(RequestError, match="only FAILED or STALLED runs can resume"):
        ask(svc, {"action": "resume", "run_id": run_id})
    svc.run_store.mark_failed(run_id, "boom", "dp_worker#0", "ValueError", generation=0)
    svc.tensor_store.commit(run_id, -1, 44, {}, "{}")  # worker 0 committed the finish before it failed
    before = svc.run_store.get_run(run_id)
    with pytest.raises(RequestError, match="has applied every step already"):
        ask(svc, {"action": "resume", "run_id": run_id})
    assert svc.run_store.get_run(run_id) == before and svc.invoker.events == []
