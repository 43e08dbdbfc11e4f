"""The commit point of a trainer invocation, on fakes: of two copies of one event only one commit
lands, and a copy that finds another's move between its read and its write (a commit, a cancel, a
lost cache) leaves no trace of its own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.fakes import fake_services
from tests.fakes.chain import deliver, launch, once_before, step_to
from trainer import lifecycle
from trainer.handlers.trainer import StepFailed
from trainer.vocabulary import Notice, Outcome, RunStatus


@pytest.fixture
def svc():
    return fake_services()


def test_a_stale_copys_commit_is_refused_and_the_chain_goes_on_once(svc) -> None:
    run_id = launch(svc)
    event = step_to(svc, run_id, 3)
    # Copy B runs the whole event between copy A's read and A's commit.
    other = once_before(svc.tensor_store, "commit", lambda: deliver(svc, event))
    mine = deliver(svc, event)
    assert other[0]["status"] == Outcome.APPLIED
    assert mine["status"] == Outcome.DUPLICATE and not mine["completed"], "A lost the race and did nothing"
    assert svc.tensor_store.cursor(run_id) == 3
    assert [e["seq"] for e in svc.invoker.take()] == [4], "one successor between them"


def test_the_outbox_of_a_position_is_its_committers(svc) -> None:
    run_id = launch(svc, epochs=2)
    event = step_to(svc, run_id, 5)  # the step closing epoch 0
    deliver(svc, event)
    outbox = json.loads(svc.tensor_store.outbox(run_id, 5))
    assert outbox["seq"] == 5 and [e["epoch"] for e in outbox["epochs"]] == [0]
    assert outbox["successor"]["seq"] == 6 and outbox["metrics"] is None
    assert [e["epoch"] for e in svc.run_store.epochs(run_id)] == [0], "the history the outbox called for"


def test_a_copy_whose_inputs_moved_on_mid_read_stops_without_committing(svc) -> None:
    run_id = launch(svc, chain="fused", max_steps_per_invocation=4)
    event = step_to(svc, run_id, 0)
    # Copy A's second read (the inputs its snapshot did not hold) meets copy B's commit.
    other = once_before(svc.tensor_store, "read_at", lambda: deliver(svc, event))
    mine = deliver(svc, event)
    assert other[0]["status"] == Outcome.APPLIED and other[0]["last_seq"] == 3
    assert mine["status"] == Outcome.DUPLICATE
    assert svc.tensor_store.cursor(run_id) == 3 and [e["seq"] for e in svc.invoker.take()] == [4]


def test_a_cancel_between_the_read_and_the_commit_wins(svc) -> None:
    run_id = launch(svc)
    event = step_to(svc, run_id, 2)
    before = svc.tensor_store.cursor(run_id)
    once_before(svc.tensor_store, "commit", lambda: lifecycle.cancel(svc, run_id))
    result = deliver(svc, event)
    assert result["status"] == Outcome.CANCELLED
    assert svc.tensor_store.cursor(run_id) == before and svc.tensor_store.outbox(run_id, 2) is None
    assert svc.invoker.events == [] and svc.run_store.get_run(run_id)["status"] == RunStatus.CANCELLED


def test_a_cache_lost_before_the_commit_fails_the_run_and_writes_nothing(svc) -> None:
    run_id = launch(svc)
    event = step_to(svc, run_id, 2)
    once_before(svc.tensor_store, "commit", svc.tensor_store.flush)
    with pytest.raises(StepFailed, match="lost its chain position"):
        deliver(svc, event)
    assert not svc.tensor_store.exists(run_id) and svc.invoker.events == []
    run = svc.run_store.get_run(run_id)
    assert run["status"] == RunStatus.FAILED and run["failure_reason"].startswith("cache lost:")
    assert len(svc.notifier.of(Notice.FAILED, run_id)) == 1


def test_a_finish_commits_only_the_weights(svc) -> None:
    run_id = launch(svc, epochs=1, chain="fused", optimizer="adam")  # the whole run in one invocation
    first = step_to(svc, run_id, 0)
    committed: dict[str, np.ndarray] = {}
    original = svc.tensor_store.commit

    def keep(run, expected, new, tensors, outbox):
        committed.update(tensors)
        return original(run, expected, new, tensors, outbox)

    svc.tensor_store.commit = keep
    assert deliver(svc, first)["status"] == Outcome.SUCCEEDED
    assert sorted(committed) == ["W1", "W2", "b1", "b2"], "no optimizer state, activations or cost"
